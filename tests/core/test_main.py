"""The installed `esq` entry point, run as a user runs it: warnings, errors and --debug."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def esq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esq", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def broken_site(tmp_path: Path) -> Path:
    """A folder holding an installed distribution whose plugin fails to import."""
    (tmp_path / "broken_at_import.py").write_text("raise RuntimeError('needs libfoo')\n")
    info = tmp_path / "esq_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: esq-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[esq]\nesq-broken = broken_at_import\n")
    return tmp_path


def test_a_broken_installed_plugin_is_one_warning_line_and_the_command_works(tmp_path):
    result = esq("list", "pipelines", env={"PYTHONPATH": str(broken_site(tmp_path))})
    assert result.returncode == 0 and "demo" in result.stdout
    assert result.stderr == (
        "esq: plugin 'esq-broken' (esq-broken 0.1) failed to import: RuntimeError: needs libfoo; "
        "skipped it (set ESQ_STRICT_PLUGINS=1 to make this an error)\n"
    )


def test_strict_mode_turns_it_into_one_error_line(tmp_path):
    result = esq("list", env={"PYTHONPATH": str(broken_site(tmp_path)), "ESQ_STRICT_PLUGINS": "1"})
    assert result.returncode == 1
    assert result.stderr.startswith("Error: plugin 'esq-broken' (esq-broken 0.1) failed to import")
    assert result.stderr.count("\n") == 1


def test_debug_flag_and_variable_show_the_traceback(tmp_path):
    plugin = tmp_path / "explodes.py"
    plugin.write_text("raise ImportError('needs libfoo')\n")
    quiet = esq("list", "--plugin", str(plugin))
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    for result in (
        esq("list", "--plugin", str(plugin), "--debug"),
        esq("list", "--plugin", str(plugin), env={"ESQ_DEBUG": "1"}),
    ):
        assert result.returncode == 1 and "Traceback" in result.stderr and "needs libfoo" in result.stderr


def test_a_plugin_may_not_replace_a_core_command(tmp_path):
    path = tmp_path / "takes_run.py"
    path.write_text(
        textwrap.dedent(
            """
            import click
            from esq import hookimpl

            @hookimpl
            def esq_commands(cli):
                @cli.command("run")
                def run():
                    click.echo("mine")
            """
        )
    )
    result = esq("--help", env={"ESQ_PLUGINS": str(path)})
    assert result.returncode == 1
    assert result.stderr == "Error: plugin 'takes_run' adds command 'run', which is esq's own\n"
