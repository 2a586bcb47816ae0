"""The code blocks of every README, as tests: pytest-codeblocks reads the blocks (and the marks a
README puts before one: ``<!--pytest.mark.skip(reason="...")-->``, ``<!--pytest-codeblocks:cont-->``,
``<!--pytest-codeblocks:expected-output-->``); this module sorts them into what is checked how.

- a ``python`` block runs, after the README's earlier blocks, in one namespace per README (as a
  reader goes down the page), in a temporary folder;
- every command of a ``bash``/``sh`` block that starts with ``esq`` is checked: read-only commands
  (``esq list``, ``esq plugins``, ``esq cache ls``, ``esq weights``, ``esq --version``) and a block
  with an expected output run for real; ``esq run PIPELINE ...`` builds its config and runs the
  pipeline's check (what runs before the run directory is made) without running it; any other
  command is parsed by its click command (every option and value type checked), not invoked;
- ``pip install``, ``make`` and ``pytest`` commands are not run, but what they name must exist: the
  project folders and their extras, the pinned torch versions, the make target, the test folder.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

from pytest_codeblocks import CodeBlock, extract_from_file

ROOT = Path(__file__).resolve().parents[2]
SHELL_SYNTAXES = {"bash", "sh", "shell", "console"}
# esq commands that only read: run for real, they must exit 0.
READ_ONLY = [("list",), ("plugins",), ("cache", "ls"), ("weights",), ("--version",)]
SEPARATORS = {"&&", "||", ";", "|"}


def readmes() -> list[Path]:
    """Every README of the repository: the root's, each package's and each example's."""
    return [ROOT / "README.md", *sorted(ROOT.glob("packages/*/README.md")), *sorted(ROOT.glob("examples/*/README.md"))]


@dataclasses.dataclass(frozen=True)
class Command:
    """One command of a shell block; ``line`` is its first line in the README."""

    readme: str
    line: int
    argv: tuple[str, ...]
    expected_output: str | None
    marks: tuple[str, ...]
    position: int = 0  # among the commands of its block: the line of the expected output it prints
    in_block: int = 1  # commands in its block: one has the whole expected output, several one line each

    @property
    def mode(self) -> str:
        """How the test checks it: ``run`` (for real), ``expected`` (for real, output compared),
        ``check`` (``esq run``'s config and pipeline check), ``parse`` (click parses it), ``files``
        (``pip install``, ``make``, ``pytest``: what they name exists) or ``other`` (counted only)."""
        if self.argv[0] in ("pip", "make", "pytest"):
            return "files"
        if self.argv[0] != "esq":
            return "other"
        if self.expected_output is not None:
            return "expected"
        if any(self.argv[1 : 1 + len(prefix)] == prefix for prefix in READ_ONLY):
            return "run"
        return "check" if self.argv[1:2] == ("run",) else "parse"

    @property
    def id(self) -> str:
        return f"{self.readme}:{self.line}:{' '.join(self.argv[:3])}"


def _logical_lines(code: str) -> list[tuple[int, str]]:
    """The block's lines with backslash continuations joined, each with its first line's offset."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for offset, line in enumerate(code.splitlines()):
        if not pending:
            start = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


REDIRECTION = re.compile(r"[0-9&]?>>?")  # > file, 2>> file, &> file, or >file in one word


def shell_commands(readme: Path, block: CodeBlock) -> list[Command]:
    """The commands of one shell block: comments dropped, ``a && b``, ``a; b`` and ``a | b`` split,
    redirections (``> file``, ``2> log``) left out."""
    name = readme.relative_to(ROOT).as_posix()
    commands = []
    for offset, line in _logical_lines(block.code):
        words = shlex.split(line, comments=True)
        current: list[str] = []
        target = False
        for word in [*words, ";"]:
            if word in SEPARATORS:
                if current:
                    # The fence is on block.lineno; its first line of code on the next.
                    commands.append(Command(name, block.lineno + 1 + offset, tuple(current), None, tuple(block.marks)))
                current, target = [], False
            elif target:
                target = False
            elif REDIRECTION.fullmatch(word):
                target = True
            elif not REDIRECTION.match(word):
                current.append(word)
    if block.expected_output is not None:
        commands = [
            dataclasses.replace(
                command, expected_output=block.expected_output, position=position, in_block=len(commands)
            )
            for position, command in enumerate(commands)
        ]
    return commands


def all_commands() -> list[Command]:
    """Every command of every README's shell blocks."""
    return [
        command
        for readme in readmes()
        for block in extract_from_file(readme)
        if block.syntax in SHELL_SYNTAXES
        for command in shell_commands(readme, block)
    ]


@dataclasses.dataclass(frozen=True)
class PythonBlock:
    """A README's ``python`` block; ``index`` counts the README's python blocks from 0."""

    readme: str
    index: int
    line: int
    code: str
    marks: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.readme}:{self.line}"

    @property
    def expected_to_fail(self) -> bool:
        """A README marks it as failing here (strictly: with the error that the missing file gives)."""
        return any(mark.strip().startswith("pytest.mark.xfail(") for mark in self.marks)

    @property
    def skip_reason(self) -> str | None:
        """The reason of a ``pytest.mark.skip(reason=...)`` the README put before the block."""
        for mark in self.marks:
            if found := re.fullmatch(r"pytest\.mark\.skip\(reason=(['\"])(.+)\1\)", mark.strip()):
                return found.group(2)
        return None


# Blocks that need what this machine lacks (pretrained weights, a trained checkpoint, the reader's
# images), in READMEs whose owners have yet to mark them: the same mark the README would carry,
# found by a line of the block. Each runs up to the line that needs the missing thing and must fail
# there with that error (strict: one that starts to pass must lose its entry).
NOT_RUNNABLE_HERE = {
    ("README.md", 'model = load_checkpoint("runs/squeeze/<run>/checkpoints/best.ckpt")'): (
        'pytest.mark.xfail(raises=esq.CheckpointError, strict=True, reason="needs a trained checkpoint")'
    ),
    ("README.md", 'maps = backbone.features(backbone.preprocess(images), ["layer3", "layer4"])'): (
        'pytest.mark.xfail(raises=NameError, strict=True, reason="a fragment: the reader\'s images")'
    ),
    ("packages/plugins-backbones/README.md", 'create("resnet50", weights="default")'): (
        'pytest.mark.xfail(raises=esq.CheckpointError, strict=True, reason="needs resnet50\'s pretrained weights")'
    ),
    ("packages/plugins-backbones/README.md", 'create("vit_b_16", weights="default", num_classes=3)'): (
        'pytest.mark.xfail(raises=esq.CheckpointError, strict=True, reason="needs vit_b_16\'s pretrained weights")'
    ),
}


def python_blocks() -> list[PythonBlock]:
    """Every README's python blocks, in order, with the marks their README (or NOT_RUNNABLE_HERE)
    gives them."""
    found = []
    for readme in readmes():
        blocks = [block for block in extract_from_file(readme) if block.syntax == "python"]
        name = readme.relative_to(ROOT).as_posix()
        for index, block in enumerate(blocks):
            marks = [*block.marks]
            marks += [mark for (where, line), mark in NOT_RUNNABLE_HERE.items() if where == name and line in block.code]
            found.append(PythonBlock(name, index, block.lineno, block.code, tuple(marks)))
    return found


def output_lines(text: str) -> list[str]:
    """Lines of output as compared with a README's expected output: trailing spaces and blank lines
    dropped."""
    return [line.rstrip() for line in text.splitlines() if line.strip()]


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def same_output_line(printed: str, shown: str) -> bool:
    """Whether a printed line is the line a README shows: the same words (spacing aside), numbers
    within 5% (or 0.01: another CPU rounds float sums otherwise), and a README line ending in
    ``...`` stands for any rest of the line."""
    if shown.endswith("..."):
        shown = shown[:-3].rstrip()
        printed = printed[: len(shown)] if len(printed) >= len(shown) else printed
    if [" ".join(part.split()) for part in NUMBER.split(printed)] != [" ".join(p.split()) for p in NUMBER.split(shown)]:
        return False
    pairs = zip(NUMBER.findall(printed), NUMBER.findall(shown), strict=True)
    return all(abs(float(a) - float(b)) <= max(0.01, 0.05 * abs(float(b))) for a, b in pairs)


@dataclasses.dataclass(frozen=True)
class SynopsisEntry:
    """One command of a README's synopsis (a ``text`` block of ``esq ...`` lines with ``[--option]``s):
    the subcommand's words and the options it names."""

    readme: str
    line: int
    words: tuple[str, ...]
    options: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.readme}:{self.line}:esq {' '.join(self.words)}"


def _synopsis_entry(readme: str, line: int, text: str) -> SynopsisEntry:
    words = []
    for word in text.split()[1:]:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        words.append(word)
    # Options in capitals (--PIPELINE-OPTION) stand for a pipeline's own.
    options = tuple(dict.fromkeys(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)))
    return SynopsisEntry(readme, line, tuple(words), options)


def synopsis_entries() -> list[SynopsisEntry]:
    """Every command of every README's synopsis blocks: ``text`` blocks whose unindented lines all
    start with ``esq `` and that show an option in brackets (an output block shows none)."""
    entries = []
    for readme in readmes():
        name = readme.relative_to(ROOT).as_posix()
        for block in extract_from_file(readme):
            lines = block.code.splitlines()
            heads = [line for line in lines if line and not line[0].isspace()]
            if block.syntax != "text" or not heads or not all(line.startswith("esq ") for line in heads):
                continue
            if "[--" not in block.code:
                continue
            current: list[str] = []
            start = 0
            for offset, line in enumerate([*lines, "esq"]):
                if line.startswith("esq"):
                    if current:
                        entries.append(_synopsis_entry(name, block.lineno + 1 + start, " ".join(current)))
                    current, start = [line], offset
                elif line.strip():
                    current.append(line)
    return entries
