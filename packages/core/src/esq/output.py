"""Printing results: a rich table for people, JSON (``--json``) for programs, both on stdout."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from esq.console import stdout
from esq.files import to_json


def format_cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return ", ".join(format_cell(item) for item in value)
    return str(value)


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Print ``rows`` as a table; ``columns`` default to every key, in order of appearance."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        # cells are text, not rich markup: "esq-backbones[lpips]" must print as written
        table.add_row(*(escape(format_cell(row.get(column))) for column in columns))
    stdout.print(table)


def print_json(data: Any) -> None:
    """Strict JSON on stdout: non-finite numbers become null (a range's open end, a NaN)."""
    stdout.print_json(to_json(data))
