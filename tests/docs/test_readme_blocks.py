"""Every README's python blocks run and every ``esq`` command in its shell blocks is checked
(how: readme_blocks.py); the session's summary prints how many blocks are under test."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pytest_codeblocks import CodeBlock

import esq
from esq.cli.main import make_cli
from readme_blocks import (
    ROOT,
    Command,
    PythonBlock,
    SynopsisEntry,
    all_commands,
    output_lines,
    python_blocks,
    same_output_line,
    shell_commands,
    synopsis_entries,
)

EXAMPLE_SOURCES = ROOT / "examples/esq-plugin-example/src"
COMMANDS = all_commands()
ESQ_COMMANDS = [command for command in COMMANDS if command.mode != "other"]  # and pip, make, pytest
PYTHON_BLOCKS = python_blocks()


class Stopped(BaseException):
    """Raised in place of running a command or a pipeline: everything before it was checked. A
    BaseException, so that esq's one-line error handling lets it through."""


def _marks(marks: tuple[str, ...]) -> list[pytest.MarkDecorator]:
    # What pytest-codeblocks' own collector does with the marks a README puts before a block, with
    # `esq` there too: <!--pytest.mark.xfail(raises=esq.CheckpointError, strict=True, reason="...")-->
    return [eval(mark, {"pytest": pytest, "sys": sys, "esq": esq}) for mark in marks]


ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[\w./<>@+-]+\w")
EXAMPLE_COMPONENTS = ("random_projection", "mean_cosine", "esq_plugin_example")


@pytest.fixture
def readme_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A reader's environment: an empty working folder and an empty activation cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ESQ_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _with_example_if_shown(readme: str, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A block that shows the example plugin's components (or is in its README) gets the plugin as a
    reader who installed it has it: from its sources, when it is not installed here."""
    if not (readme.startswith("examples/") or any(name in text for name in EXAMPLE_COMPONENTS)):
        return
    try:
        importlib.metadata.distribution("esq-plugin-example")
    except importlib.metadata.PackageNotFoundError:
        monkeypatch.syspath_prepend(str(EXAMPLE_SOURCES))
        monkeypatch.setenv("ESQ_PLUGINS", "esq_plugin_example.plugin")


def _invoke(argv: list[str]) -> click.testing.Result:
    return CliRunner().invoke(make_cli(), argv, catch_exceptions=False)


def _missing_inputs(argv: list[str]) -> list[str]:
    """The words of a command (and values after ``=``) that name a file or folder that is not here:
    the README's placeholders for a reader's data, checkpoints and configs."""
    words = {piece for word in argv for piece in (word, word.partition("=")[2]) if piece}
    return [
        word
        for word in words
        if not word.startswith("-") and ("/" in word or Path(word).suffix) and not Path(word).exists()
    ]


def _without_missing_config(argv: list[str]) -> list[str]:
    """A ``--config FILE`` the reader would write is not here: check the rest of the command."""
    kept, index = [], 0
    while index < len(argv):
        if argv[index] == "--config" and index + 1 < len(argv) and not Path(argv[index + 1]).exists():
            index += 2
            continue
        kept.append(argv[index])
        index += 1
    return kept


def _pinned_torch() -> dict[str, str]:
    """torch and torchvision as scripts/torch-env.sh installs them."""
    script = (ROOT / "scripts/torch-env.sh").read_text()
    return dict(re.findall(r"\b(torch|torchvision)==([0-9][\w.]*)", script))


def check_named_files(command: Command) -> None:
    """A ``pip install``, ``make`` or ``pytest`` command of a README names what is there: each
    project folder (with the extras it declares), torch at its pinned versions, a make target, a
    test folder."""
    where = f"{command.readme}, line {command.line}: `{' '.join(command.argv)}`"
    tool, arguments = command.argv[0], [word for word in command.argv[1:] if not word.startswith("-")]
    if tool == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE)
        assert set(arguments) <= set(targets), f"{where}: the Makefile's targets are {targets}"
    elif tool == "pytest":
        assert all((ROOT / word).exists() for word in arguments), f"{where}: no such test folder"
    else:
        pinned = _pinned_torch()
        for word in arguments[1:] if arguments[:1] == ["install"] else arguments:
            name, equals, version = word.partition("==")
            if equals:
                assert pinned.get(name, version) == version, f"{where}: scripts/torch-env.sh pins {pinned}"
                continue
            folder, _, extras = word.partition("[")
            if "/" not in folder and folder not in (".", ".."):
                continue  # a package from the registry, not one of this repository's folders
            project = ROOT / folder / "pyproject.toml"
            assert project.is_file(), f"{where}: {folder} is not a project folder"
            declared = tomllib.loads(project.read_text())["project"].get("optional-dependencies", {})
            wanted = {extra for extra in extras.rstrip("]").split(",") if extra}
            assert wanted <= set(declared), f"{where}: {folder} declares the extras {sorted(declared)}"


def _parse_only(original):
    def invoke(self: click.Command, ctx: click.Context):
        if isinstance(self, click.Group):
            return original(self, ctx)
        raise Stopped

    return invoke


def _assert_stopped_or_missing_input(argv: list[str], command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        result = _invoke(argv)
    except Stopped:
        return
    if argv[:1] == ["run"] and "--check" in argv and result.exit_code == 0:
        return
    error = result.output.strip().splitlines()[-1] if result.output.strip() else ""
    # A reader's own data, or a pretrained weights file, is not here: the command is right if what
    # it refused is a file this machine lacks.
    missing = _missing_inputs(argv) + [path for path in ABSOLUTE_PATH.findall(error) if not Path(path).exists()]
    assert result.exit_code != 0 and any(word.rstrip("/") in error for word in missing), (
        f"{command.readme}, line {command.line}: `{' '.join(command.argv)}` is refused: {result.output}"
    )


@pytest.mark.parametrize(
    "command", [pytest.param(command, id=command.id, marks=_marks(command.marks)) for command in ESQ_COMMANDS]
)
def test_readme_esq_command_is_accepted(command: Command, readme_environment: Path, monkeypatch) -> None:
    check_command(command, monkeypatch)


def check_command(command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check one README command as its mode says; an AssertionError says what the README got wrong."""
    argv = list(command.argv[1:])
    _with_example_if_shown(command.readme, " ".join(argv), monkeypatch)
    if command.mode == "run":
        result = _invoke(argv)
        assert result.exit_code == 0, f"{command.readme}, line {command.line}: {result.output}"
    elif command.mode == "expected":
        result = _invoke(argv)
        printed, expected = output_lines(result.output), output_lines(command.expected_output or "")
        if command.in_block == 1:
            # one command, a whole output (a table): stdout is the README's (stderr adds the run directory)
            shown = output_lines(result.stdout)
        else:
            # one output line per command (error lines): this command's is its last
            expected, shown = expected[command.position : command.position + 1], printed[-1:]
        assert len(shown) == len(expected) and all(map(same_output_line, shown, expected)), (
            f"{command.readme}, line {command.line}: `{' '.join(command.argv)}` prints\n{result.output}\n"
            "where the README shows\n" + "\n".join(expected)
        )
    elif command.mode == "files":
        check_named_files(command)
    elif command.mode == "check":
        _assert_stopped_or_missing_input([*_without_missing_config(argv), "--check"], command, monkeypatch)
    else:
        monkeypatch.setattr(click.Command, "invoke", _parse_only(click.Command.invoke))
        _assert_stopped_or_missing_input(argv, command, monkeypatch)


_namespaces: dict[str, tuple[int, dict]] = {}


def _namespace_before(block: PythonBlock, folder: Path) -> dict:
    """The README's namespace after its earlier blocks (skipped ones left out), as a reader who ran
    them in order has it; kept between tests so each block runs once."""
    done, namespace = _namespaces.get(block.readme, (0, None))
    if namespace is None or done > block.index:
        done, namespace = 0, {"__name__": "__main__"}
    for earlier in PYTHON_BLOCKS:
        if earlier.readme == block.readme and done <= earlier.index < block.index and not earlier.skip_reason:
            try:
                exec(compile(earlier.code, f"{earlier.readme}:{earlier.line}", "exec"), namespace)
            except Exception:  # its own test reports it; the reader goes on to the next block
                pass
    return namespace


@pytest.mark.parametrize(
    "block", [pytest.param(block, id=block.id, marks=_marks(block.marks)) for block in PYTHON_BLOCKS]
)
def test_readme_python_block_runs(block: PythonBlock, readme_environment: Path, monkeypatch) -> None:
    _with_example_if_shown(block.readme, block.code, monkeypatch)
    namespace = _namespace_before(block, readme_environment)
    exec(compile(block.code, f"{block.readme}:{block.line}", "exec"), namespace)
    _namespaces[block.readme] = (block.index + 1, namespace)
    # A block that shows a test (as the plugin walk-through does) has it run, too.
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value) and value.__code__.co_filename.endswith(f":{block.line}"):
            value()


def test_every_readme_shell_command_is_counted() -> None:
    """Each shell command is sorted into one way of checking it; none is lost between the README
    and the tests (the counts print in the session summary)."""
    assert ESQ_COMMANDS and PYTHON_BLOCKS
    assert {command.mode for command in ESQ_COMMANDS} <= {"run", "expected", "check", "parse", "files"}
    assert all(command.argv for command in COMMANDS)


def test_a_shell_block_is_split_into_its_commands() -> None:
    block = CodeBlock("esq run demo \\\n    --epochs 1   # one epoch\nesq list && esq plugins\nmake demo\n", 10, "bash")
    commands = shell_commands(ROOT / "README.md", block)
    assert [(c.line, c.argv, c.mode) for c in commands] == [
        (11, ("esq", "run", "demo", "--epochs", "1"), "check"),
        (13, ("esq", "list"), "run"),
        (13, ("esq", "plugins"), "run"),
        (14, ("make", "demo"), "files"),
    ]


def test_redirections_are_no_part_of_the_command() -> None:
    code = "esq run demo --check > demo.toml 2>err.log\nesq list | grep vq ; esq plugins >> all.txt\n"
    commands = shell_commands(ROOT / "README.md", CodeBlock(code, 1, "bash"))
    assert [c.argv for c in commands] == [
        ("esq", "run", "demo", "--check"),
        ("esq", "list"),
        ("grep", "vq"),
        ("esq", "plugins"),
    ]


def _command(*argv: str, expected: str | None = None) -> Command:
    return Command("README.md", 1, ("esq", *argv), expected, ())


@pytest.mark.parametrize(
    "argv",
    [
        ("run", "demo", "--set", "stpes=1"),  # an option the pipeline lacks
        ("run", "demo", "--set", "quantizers=vq", "--set", "quantizer_options.vq.codebook_sise=8"),  # the check's
        ("run", "no_such_pipeline"),
        ("run", "similarity", "--checkpoints-dir", "nowhere/", "--metrcs", "cka"),  # data absent, option wrong
        ("cache", "build", "--no-such-option", "1"),
        ("list", "no_such_kind"),
    ],
)
def test_a_wrong_readme_command_fails_its_check(argv, readme_environment: Path, monkeypatch) -> None:
    with pytest.raises(AssertionError):
        check_command(_command(*argv), monkeypatch)


def test_a_readme_command_whose_data_is_not_here_passes_its_check(readme_environment: Path, monkeypatch) -> None:
    check_command(_command("run", "similarity", "--checkpoints-dir", "nowhere/", "--metrics", "cka"), monkeypatch)


def test_an_output_the_command_does_not_print_fails(readme_environment: Path, monkeypatch) -> None:
    with pytest.raises(AssertionError):
        check_command(_command("run", "demo", "--set", "epoch=2", expected="Error: something else\n"), monkeypatch)


def test_output_lines_match_with_numbers_close_and_an_ellipsis() -> None:
    assert same_output_line("vq    0.2267   6", "vq  0.2270  6")
    assert not same_output_line("vq    0.2267   6", "vq  0.3  6")
    assert not same_output_line("fsq   0.2267   6", "vq  0.2267  6")
    assert same_output_line("Error: options: a, b, c", "Error: options: a, ...")
    assert not same_output_line("Error: choices: a, b, c", "Error: options: a, ...")


@pytest.mark.parametrize(
    "argv",
    [
        ("pip", "install", "-e", "packages/no-such-package"),
        ("pip", "install", "-e", "packages/core[no-such-extra]"),
        ("pip", "install", "torch==1.0.0"),
        ("make", "no-such-target"),
        ("pytest", "tests/no-such-folder"),
    ],
)
def test_a_readme_install_make_or_pytest_naming_what_is_not_there_fails(argv) -> None:
    with pytest.raises(AssertionError):
        check_named_files(Command("README.md", 1, argv, None, ()))


@pytest.mark.parametrize("entry", [pytest.param(entry, id=entry.id) for entry in synopsis_entries()])
def test_readme_synopsis_names_real_commands_and_options(entry: SynopsisEntry) -> None:
    """`esq cache build [--layers L ...]` in a README's synopsis: `esq cache build` is a command and
    takes every option the line shows."""
    group = make_cli()
    command: click.Command = group
    with click.Context(group) as context:
        for word in entry.words:
            assert isinstance(command, click.Group), f"{entry.id}: `{word}` after a command that has no subcommands"
            found = command.get_command(context, word)
            assert found is not None, f"{entry.id}: `esq` has no command `{word}` here"
            command = found
            context = click.Context(command, parent=context)
        accepted = {
            name for parameter in command.get_params(context) for name in parameter.opts + parameter.secondary_opts
        }
    assert set(entry.options) <= accepted, f"{entry.id}: no option {sorted(set(entry.options) - accepted)}"


def test_a_synopsis_option_the_command_lacks_fails() -> None:
    with pytest.raises(AssertionError):
        test_readme_synopsis_names_real_commands_and_options(SynopsisEntry("README.md", 1, ("list",), ("--colour",)))
