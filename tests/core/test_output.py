"""Rows as people and programs read them: never a split cell, and --format table|json|csv|markdown."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from esq import output
from esq.cli.main import make_cli

FAKE = str(Path(__file__).with_name("fake_plugin.py"))
WIDE = [
    {"model": f"model_{index}", **{f"metric_{column}": -0.02349 * index for column in range(12)}} for index in range(3)
]


def esq(*args: str):
    return CliRunner().invoke(make_cli(), list(args), catch_exceptions=False)


def test_a_piped_table_keeps_each_row_on_one_line_and_each_number_whole(capsys):
    output.print_table("wide", WIDE)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "wide" and len(lines) == 3 + len(WIDE)
    assert all("-0.04698" in line for line in lines[-1:]) and len(lines[-1]) > 120


def test_a_terminal_too_narrow_gets_one_block_per_row(monkeypatch):
    narrow = Console(file=io.StringIO(), force_terminal=True, width=40, color_system=None)
    monkeypatch.setattr(output, "stdout", narrow)
    output.print_table("wide", WIDE)
    text = narrow.file.getvalue()
    assert "model      model_2" in text
    assert "metric 11  -0.04698" in text and "┃" not in text


def test_a_terminal_wide_enough_gets_the_table(monkeypatch):
    wide = Console(file=io.StringIO(), force_terminal=True, width=400, color_system=None)
    monkeypatch.setattr(output, "stdout", wide)
    output.print_table("wide", WIDE)
    assert "┃ model" in wide.file.getvalue() and "-0.04698" in wide.file.getvalue()


@pytest.mark.parametrize("command", [["list", "quantizers"], ["plugins"], ["run", "echo", "--rows", "3"]])
def test_every_command_that_prints_rows_takes_each_format(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    arguments = [*command, "--plugin", FAKE]
    as_json = json.loads(esq(*arguments, "--format", "json").stdout)
    assert json.loads(esq(*arguments, "--json").stdout) == as_json
    rows = list(csv.DictReader(io.StringIO(esq(*arguments, "--format", "csv").stdout)))
    assert len(rows) == len(as_json) and set(rows[0]) <= set(as_json[0]) and ({"name", "row"} & set(rows[0]))
    markdown = esq(*arguments, "--format", "markdown").stdout.splitlines()
    assert markdown[1].startswith("|---|") and len(markdown) == 2 + len(as_json)


def test_markdown_escapes_the_pipe_and_line_breaks():
    assert output.rows_to_markdown([{"a": "x|y\nz"}]).splitlines()[2] == "| x\\|y z |"


def test_piped_columns_line_up_in_terminal_columns_with_wide_characters():
    from rich.cells import cell_len  # columns a terminal shows

    text = output.rows_to_text("models", [{"model": "长长长", "cka": 0.5}, {"model": "abcdef", "cka": 0.25}])
    header, _, *lines = text.splitlines()[1:]
    starts = [cell_len(line[: line.index("0.")]) for line in lines]
    assert starts == [cell_len(header[: header.index("cka")])] * 2
