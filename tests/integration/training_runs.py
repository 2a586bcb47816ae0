"""Test support for the training tests: ``esq run PIPELINE`` in-process, and its run directory."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from esq.cli.main import make_cli


def esq_run(tmp_path: Path, pipeline: str, *options: str, expect: int = 0):
    """Run ``pipeline`` with ``options`` into ``tmp_path/runs`` (JSON rows on stdout), check its exit
    code is ``expect``; the result and the newest run directory (``None`` if none was made)."""
    arguments = ["run", pipeline, *options, "--output-dir", str(tmp_path / "runs"), "--json"]
    result = CliRunner().invoke(make_cli(), arguments)
    assert result.exit_code == expect, result.output
    runs = sorted((tmp_path / "runs" / pipeline).glob("*"), key=lambda path: path.stat().st_mtime)
    return result, (runs[-1] if runs else None)
