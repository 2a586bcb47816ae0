"""Printing rows on stdout, in the ``--format`` asked for: ``table`` for people (a rich table on
a terminal, one record per block where it would not fit; aligned plain text, never wrapped, when
stdout is a file or a pipe), ``json`` for programs (``--json``), ``csv`` for spreadsheets and
``markdown`` for papers and issues."""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table

from esq.console import stdout
from esq.files import to_json

FORMATS = ("table", "json", "csv", "markdown")


def format_cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return ", ".join(format_cell(item) for item in value)
    return str(value)


def _columns(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None) -> list[str]:
    return list(columns) if columns is not None else list(dict.fromkeys(key for row in rows for key in row))


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Tidy rows as CSV text; columns in order of first appearance (or ``columns``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows, columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def rows_to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table; ``|`` and line breaks in cells are escaped.

    >>> print(rows_to_markdown([{"model": "vq", "iou": 0.51234}]), end="")
    | model | iou |
    |---|---|
    | vq | 0.5123 |
    """
    names = _columns(rows, columns)

    def cell(value: Any) -> str:
        return format_cell(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(row.get(name)) for name in names) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rows_to_text(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Aligned plain text as wide as its widest row: what a file or a pipe gets, never wrapped.

    >>> print(rows_to_text("runs", [{"model": "baseline", "iou": -0.02349}]), end="")
    runs
    model     iou
    --------  --------
    baseline  -0.02349
    """
    names = _columns(rows, columns)
    cells = [[name.replace("_", " ") for name in names]]
    cells += [[" ".join(format_cell(row.get(name)).split()) for name in names] for row in rows]
    widths = [max(cell_len(line[index]) for line in cells) for index in range(len(names))]
    lines = [title, _aligned(cells[0], widths)]
    lines.append("  ".join("-" * width for width in widths))
    lines += [_aligned(line, widths) for line in cells[1:]]
    return "\n".join(lines) + "\n"


def _aligned(cells: list[str], widths: list[int]) -> str:
    """``cells`` padded to ``widths`` in terminal columns (a CJK character takes two)."""
    return "  ".join(text + " " * (width - cell_len(text)) for text, width in zip(cells, widths, strict=True)).rstrip()


def _vertical(title: str, rows: Sequence[dict[str, Any]], names: list[str]) -> None:
    """One block per row (``column: value``): a terminal too narrow for the table."""
    stdout.print(title, highlight=False)
    width = max(cell_len(name) for name in names)
    for row in rows:
        stdout.print("", highlight=False)
        for name in names:
            stdout.print(
                escape(f"{name.replace('_', ' ').ljust(width)}  {format_cell(row.get(name))}"), highlight=False
            )


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Print ``rows`` for people; ``columns`` default to every key, in order of appearance. A cell
    is never split: on a terminal the table fits its width or becomes one block per row; to a file
    or a pipe it is plain text as wide as it needs."""
    names = _columns(rows, columns)
    if not stdout.is_terminal:
        stdout.file.write(rows_to_text(title, rows, names))
        return
    table = Table(title=title, title_justify="left")
    for name in names:
        table.add_column(name.replace("_", " "), no_wrap=True)
    for row in rows:
        # cells are text, not rich markup: "esq-backbones[lpips]" must print as written
        table.add_row(*(escape(format_cell(row.get(name))) for name in names))
    if table.__rich_measure__(stdout, stdout.options).maximum > stdout.width:
        _vertical(title, rows, names)
        return
    stdout.print(table)


def print_rows(
    title: str, rows: Sequence[dict[str, Any]], output_format: str, columns: Sequence[str] | None = None
) -> None:
    """``rows`` on stdout in ``output_format`` (one of ``FORMATS``)."""
    if output_format == "json":
        print_json(list(rows))
    elif output_format == "csv":
        stdout.file.write(rows_to_csv(rows, columns))
    elif output_format == "markdown":
        stdout.file.write(rows_to_markdown(rows, columns))
    else:
        print_table(title, rows, columns)


def format_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--format table|json|csv|markdown`` and ``--json`` (the same as ``--format json``); the
    command receives ``output_format``."""

    @functools.wraps(command)
    def with_format(*args: Any, output_format: str, as_json: bool, **kwargs: Any) -> Any:
        return command(*args, output_format="json" if as_json else output_format, **kwargs)

    with_json = click.option("--json", "as_json", is_flag=True, help="The same as --format json.")(with_format)
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="How rows are printed: a table for people, json, csv, or markdown (for papers and issues).",
    )(with_json)


def print_json(data: Any) -> None:
    """Strict JSON on stdout: non-finite numbers become null (a range's open end, a NaN)."""
    stdout.print_json(to_json(data))
