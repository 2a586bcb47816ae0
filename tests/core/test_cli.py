"""The esq command line as a user types it: output, run directories, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import fake_plugin
from esq.cli.main import make_cli

FAKE = str(Path(__file__).with_name("fake_plugin.py"))


def esq(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(make_cli(), list(args), env=env, catch_exceptions=False)


def test_version():
    result = esq("--version")
    assert result.exit_code == 0 and result.output.startswith("esq ")


def test_plugins_json_lists_name_version_status_hooks_and_components():
    rows = json.loads(esq("plugins", "--json", "--plugin", FAKE).stdout)
    fake = next(row for row in rows if row["name"] == "fake_plugin")
    assert fake["status"] == "loaded" and fake["source"] == "--plugin"
    assert fake["provides"]["quantizers"] == ["rounding"]
    assert "esq_pipelines" in fake["hooks"] and "esq_metrics" in fake["hooks"]
    core = next(row for row in rows if row["name"] == "esq")
    assert core["distribution"] == "esq-core" and core["provides"] == {
        "pipelines": ["demo", "degradation", "squeeze", "baseline", "visualize", "similarity"]
    }


def test_plugins_table_shows_every_plugin():
    result = esq("plugins", "--plugin", FAKE)
    assert result.exit_code == 0 and "fake_plugin" in result.stdout and "esq-core" in result.stdout


def test_list_one_kind_as_json_shows_metric_facts():
    rows = json.loads(esq("list", "metrics", "--json", "--plugin", FAKE).stdout)
    shift = next(row for row in rows if row["name"] == "mean_shift")
    assert shift["kind"] == "distribution" and shift["higher_is_better"] is False
    assert shift["summary"] == "Distance between means" and shift["plugin"].startswith(FAKE)


def test_list_shows_facts_not_a_specs_functions():
    rows = json.loads(esq("list", "quantizers", "--json", "--plugin", FAKE).stdout)
    assert rows and all(set(row) == {"name", "plugin", "summary"} for row in rows)


def test_list_all_kinds_as_tables():
    result = esq("list", "--plugin", FAKE)
    for kind in ("backbones", "quantizers", "metrics", "degradations", "retrievers", "pipelines"):
        assert kind in result.stdout
    assert "rounding" in result.stdout and "exact_ip" in result.stdout


def test_table_cells_are_printed_as_written(tmp_path):
    plugin = tmp_path / "brackets.py"
    plugin.write_text(
        "from esq import QuantizerSpec, hookimpl\n"
        "@hookimpl\n"
        "def esq_quantizers():\n"
        "    return [QuantizerSpec(name='bracket', factory=dict, summary='p[x] [b]y')]\n"
    )
    assert "p[x] [b]y" in esq("list", "quantizers", "--plugin", str(plugin)).stdout


def test_list_rejects_an_unknown_kind():
    result = esq("list", "quantiser")
    assert result.exit_code == 2 and "'quantiser' is not one of" in result.stderr


def test_run_writes_the_run_directory_and_prints_the_table(tmp_path):
    config = tmp_path / "echo.toml"
    config.write_text('rows = 4\nlabel = "from-file"\n')
    result = esq(
        "run",
        "echo",
        "--plugin",
        FAKE,
        "--config",
        str(config),
        "--set",
        "label=cli",
        "--seed",
        "3",
        "--set",
        "name=trial",
        "--output-dir",
        str(tmp_path / "runs"),
    )
    assert result.exit_code == 0, result.output
    (directory,) = (tmp_path / "runs" / "echo").iterdir()
    assert directory.name.endswith("-trial")
    document = json.loads((directory / "results.json").read_text())
    assert document["config"] == {
        "name": "trial",
        "seed": 3,
        "rows": 4,
        "label": "cli",
        "mode": "plain",
        "tags": [],
        "loud": True,
    }
    assert result.stdout.count("cli") == 4 and "run directory:" in result.stderr


def test_pipeline_options_after_its_name_override_the_file_and_set(tmp_path):
    config = tmp_path / "echo.toml"
    config.write_text('rows = 4\nlabel = "from-file"\n')
    arguments = ["--config", str(config), "--set", "label=set", "--output-dir", str(tmp_path / "runs")]
    options = ["--label", "option", "--rows=3", "--tag", "a", "--tag", "b c", "--quiet", "--mode", "2024"]
    result = esq("run", "echo", *options, "--plugin", FAKE, *arguments)
    assert result.exit_code == 0, result.output
    (directory,) = (tmp_path / "runs" / "echo").iterdir()
    document = json.loads((directory / "results.json").read_text())
    assert {key: document["config"][key] for key in ("rows", "label", "tags", "loud", "mode")} == {
        "mode": "2024",
        "rows": 3,
        "label": "option",
        "tags": ["a", "b c"],
        "loud": False,
    }
    assert "--tags, --tag" in esq("run", "echo", "--plugin", FAKE, "--help").stdout


def test_run_json_prints_rows(tmp_path):
    result = esq("run", "echo", "--plugin", FAKE, "--json", "--output-dir", str(tmp_path))
    assert json.loads(result.stdout) == [{"row": 0, "label": "x"}, {"row": 1, "label": "x"}]


def test_run_help_lists_installed_pipelines_and_a_pipelines_options():
    assert "demo" in esq("run", "--help").stdout
    text = esq("run", "echo", "--plugin", FAKE, "--help").stdout
    assert "echo" in text and "Options of pipeline 'echo'" in text and "label" in text and "rows" in text


def test_esq_plugins_variable_loads_a_plugin_for_the_command(tmp_path):
    result = esq("list", "pipelines", "--json", env={"ESQ_PLUGINS": FAKE})
    assert "echo" in [row["name"] for row in json.loads(result.stdout)]


def test_plugin_can_add_a_command(tmp_path):
    path = tmp_path / "cmd_plugin.py"
    path.write_text(
        "import click\nfrom esq import hookimpl\n@hookimpl\ndef esq_commands(cli):\n"
        "    @cli.command()\n    def hello():\n        'Say hello.'\n        click.echo('hello from a plugin')\n"
    )
    env = {"ESQ_PLUGINS": str(path)}
    assert "hello" in esq("--help", env=env).stdout
    assert esq("hello", env=env).stdout == "hello from a plugin\n"


BAD_INPUT = [
    (["run", "nosuch"], "unknown pipeline 'nosuch'"),
    (["run", "dmeo"], "unknown pipeline 'dmeo' (did you mean 'demo'?)"),
    (["run", "echo", "--plugin", FAKE, "--set", "lable=y"], "--set: unknown option 'lable' for pipeline 'echo'"),
    (["run", "echo", "--plugin", FAKE, "--set", "rows"], "--set 'rows': expected KEY=VALUE"),
    (["run", "echo", "--plugin", FAKE, "--set", "rows=many"], "--set rows: expected int, got 'many'"),
    (["run", "echo", "--plugin", "missing_dir/plugin.py"], "--plugin missing_dir/plugin.py: no such file"),
    (
        ["run", "demo", "--backbone", "tiny_segmenter", "--plugin", FAKE, "--set", "quantizers=roundng"],
        "unknown quantizer 'roundng' (did you mean",
    ),
    (
        ["run", "demo", "--backbone", "tiny_segmenter", "--plugin", FAKE, "--set", "metrics=[1]"],
        "--set metrics[0]: expected str, got 1",
    ),
    (
        [
            "run",
            "demo",
            "--backbone",
            "tiny_segmenter",
            "--plugin",
            FAKE,
            "--set",
            "quantizer_options.rounding.levls=3",
        ],
        "quantizer_options.rounding: quantizer 'rounding' has no option 'levls' (did you mean 'levels'?)",
    ),
    (
        ["run", "demo", "--backbone", "tiny_segmenter", "--plugin", FAKE, "--set", "epochs=0"],
        "epochs must be at least 1, got 0",
    ),
    (["run", "echo", "--plugin", FAKE, "--seed", "-1"], "seed -1 must be between 0 and 2**32 - 1"),
    (["run", "echo", "--plugin", FAKE, "--set", "name=a b/c"], "name 'a b/c' may hold only letters"),
    (["run", "echo", "--lable", "y", "--plugin", FAKE], "unknown option '--lable' (did you mean '--label'"),
    (["run", "echo", "--rows", "many", "--plugin", FAKE], "--rows rows: expected int, got 'many'"),
    (["run", "echo", "--plugin", FAKE, "--rows"], "--rows needs a value"),
    (["run", "echo", "--plugin", FAKE, "--quiet=yes"], "--quiet is a flag and takes no value"),
    (["run", "echo", "extra", "--plugin", FAKE], "unknown argument 'extra'"),
    (["list", "--plugin", "no:"], "--plugin no:: no:NAME needs the name of an installed plugin"),
    (["run", "demo", "--plugin", FAKE, "--set", "backbone=nope"], "unknown backbone 'nope'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_on_stderr_without_traceback(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = esq(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists(), "a run directory was made for a config that never ran"


def test_toml_syntax_error_in_config_names_file_line_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("rows = [1,\n")
    result = esq("run", "echo", "--plugin", FAKE, "--config", str(path))
    assert result.exit_code == 1 and f"{path}: invalid TOML" in result.stderr and "line 2, column 1" in result.stderr


def test_a_list_option_takes_comma_separated_values_as_set_does():
    from esq.cli.pipeline_options import option_layers
    from esq.config import build_config

    layers = option_layers(fake_plugin.EchoConfig, ["--tag", "a,b", "c", "--tag", "d"], "echo")
    assert build_config(fake_plugin.EchoConfig, layers, "echo").tags == ["a", "b", "c", "d"]


def test_a_config_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    result = esq("run", "echo", "--plugin", FAKE, "--config", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {path}: not UTF-8 text (byte 0xe9 at 11); save it as UTF-8\n"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import sys\nsys.exit(0)\n", "error importing plugin: called sys.exit(0)"),
        ("raise KeyboardInterrupt\n", "error importing plugin: KeyboardInterrupt"),
        ("class Own(BaseException): pass\nraise Own('own')\n", "error importing plugin: Own: own"),
        (
            "import sys\nfrom esq import hookimpl\n@hookimpl\ndef esq_metrics():\n    sys.exit(4)\n",
            "failed in esq_metrics(): called sys.exit(4)",
        ),
    ],
)
def test_a_plugin_that_exits_or_raises_a_base_exception_is_one_line_and_a_failure(tmp_path, code, message):
    path = tmp_path / "leaves.py"
    path.write_text(code)
    result = esq("list", "--plugin", str(path))
    assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1


def test_what_a_plugin_prints_goes_to_stderr_and_json_stays_json(tmp_path):
    path = tmp_path / "chatty.py"
    path.write_text(
        "print('hello from import')\nfrom esq import hookimpl\n@hookimpl\ndef esq_metrics():\n"
        "    print('hello from a hook')\n    return []\n"
    )
    result = esq("list", "metrics", "--json", "--plugin", str(path))
    assert result.exit_code == 0 and isinstance(json.loads(result.stdout), list)
    assert "hello from import" in result.stderr and "hello from a hook" in result.stderr


def test_dates_are_refused_as_option_values_and_a_bom_is_named(tmp_path):
    result = esq(
        "run",
        "demo",
        "--backbone",
        "tiny_segmenter",
        "--plugin",
        FAKE,
        "--set",
        "quantizer_options.rounding.levels=1979-05-27",
    )
    assert result.exit_code == 1 and "dates and times are not option values" in result.stderr
    path = tmp_path / "bom.toml"
    path.write_text("\ufeffrows = 2\n", encoding="utf-8")
    result = esq("run", "echo", "--plugin", FAKE, "--config", str(path))
    assert result.exit_code == 1 and "starts with a byte-order mark; save it as UTF-8 without BOM" in result.stderr


def test_plugin_raising_at_import_is_one_line(tmp_path):
    path = tmp_path / "explodes.py"
    path.write_text("raise ImportError('needs libfoo')\n")
    result = esq("list", "--plugin", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"Error: --plugin {path}: error importing plugin: ImportError: needs libfoo\n"


def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "explodes.py"
    path.write_text("raise ImportError('needs libfoo')\n")
    with pytest.raises(Exception, match="needs libfoo"):
        esq("list", "--plugin", str(path), "--debug")


def test_a_crashing_pipeline_is_one_line_with_a_hint(tmp_path):
    path = tmp_path / "crash_plugin.py"
    path.write_text(
        "from esq import PipelineConfig, PipelineSpec, hookimpl\n"
        "def run(config, context):\n    return 1 / 0\n"
        "@hookimpl\ndef esq_pipelines():\n"
        "    return [PipelineSpec(name='crash', config=PipelineConfig, run=run, summary='Crashes')]\n"
    )
    result = esq("run", "crash", "--plugin", str(path), "--output-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1
    (directory,) = (tmp_path / "runs" / "crash").iterdir()
    assert result.stderr == (
        "Error: unexpected ZeroDivisionError: division by zero (run again with --debug for the traceback; "
        f"run log: {directory / 'run.log'})\n"
    )


def test_list_json_is_strict_json_with_open_ranges_as_null():
    rows = json.loads(esq("list", "metrics", "--json", "--plugin", FAKE).stdout, parse_constant=pytest.fail)
    assert next(row for row in rows if row["name"] == "mean_distance")["range"] == [None, 0.0]


def test_a_plugin_command_that_raises_is_a_warning_for_installed_plugins(install_plugin, caplog):
    code = "from esq import hookimpl\n@hookimpl\ndef esq_commands(cli):\n    raise RuntimeError('no click')\n"
    install_plugin("esq-cmd", "1.0", "cmd_raises", code)
    result = esq("--help")
    assert result.exit_code == 0 and "list" in result.stdout
    assert "'esq-cmd' (esq-cmd) failed in esq_commands(): RuntimeError: no click; skipped it" in caplog.text


def test_check_prints_the_resolved_config_that_runs_as_given_and_writes_nothing(tmp_path):
    output = tmp_path / "runs"
    checked = esq("run", "echo", "--plugin", FAKE, "--rows", "3", "--tag", "a", "--check", "--output-dir", str(output))
    assert checked.exit_code == 0, checked.output
    assert not output.exists()
    assert "the options are valid; nothing was run" in checked.stderr
    config = tmp_path / "echo.toml"
    config.write_text(checked.stdout)
    assert esq("run", "echo", "--plugin", FAKE, "--config", str(config), "--output-dir", str(output)).exit_code == 0
    (directory,) = (output / "echo").iterdir()
    resolved = json.loads((directory / "results.json").read_text())["config"]
    assert resolved["rows"] == 3 and resolved["tags"] == ["a"]


def test_check_runs_the_pipelines_own_check_and_fails_as_a_run_would(tmp_path):
    output = tmp_path / "runs"
    result = esq("run", "echo", "--plugin", FAKE, "--rows", "-1", "--check", "--output-dir", str(output))
    assert result.exit_code == 1 and "echo: rows must be at least 0, got -1" in result.stderr
    assert result.stdout == "" and not output.exists()
