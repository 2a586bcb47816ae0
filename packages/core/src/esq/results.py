"""What a pipeline returns, and what it is handed while it runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from esq.errors import error_line
from esq.progress import progress
from esq.run_directories import inside_run

T = TypeVar("T")
FAILED = "failed"


def failed_row(error: BaseException | str, **keys: Any) -> dict[str, Any]:
    """A result row for something that could not be computed (a model, a metric): ``keys``
    say which, ``status`` is ``"failed"`` and ``error`` the reason in one line. The rest of the
    run goes on, and ``esq run`` exits with code 3 ("some rows failed").

    >>> failed_row(ValueError("k=10 needs more than 10 samples"), model="a", metric="jaccard_knn")["status"]
    'failed'
    """
    reason = error if isinstance(error, str) else error_line(error)
    return {**keys, "status": FAILED, "error": reason}


@dataclass
class Results:
    """A pipeline's results.

    ``rows`` are tidy (one per model × metric × setting): they become ``results.csv`` and, unless
    ``table`` is given, the table printed at the end. ``summary`` holds anything else worth
    keeping in ``results.json``; ``table`` is a shorter view to print (a ranking, say). A row
    made by ``failed_row`` records what could not be computed and why.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    table: list[dict[str, Any]] | None = None

    @property
    def failed_rows(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row.get("status") == FAILED]

    @property
    def status(self) -> str:
        """``"ok"``, ``"partial"`` (some rows failed) or ``"failed"`` (no row, or none computed)."""
        failed = len(self.failed_rows)
        return "ok" if not failed and self.rows else "partial" if failed < len(self.rows) else FAILED


@dataclass
class RunContext:
    """The run directory, the loaded plugins and helpers a pipeline's ``run(config, context)`` may use."""

    directory: Path
    log: logging.Logger
    plugins: Any
    show_progress: bool = True

    def registry(self, kind: str) -> Any:
        """The installed components of ``kind`` (one of ``esq.KINDS``) for this run."""
        return self.plugins.registry(kind)

    def path(self, name: str) -> Path:
        """Where to write the run's file or folder ``name`` (plots, predictions...): inside the
        run directory, and none of the runner's own files (else a ``ConfigError``)."""
        return inside_run(self.directory, name)

    def progress(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate over ``items`` showing progress on stderr: a bar on a terminal, else a line every
        ~10 s with done/total and the time left (``esq.progress``)."""
        if not self.show_progress:
            yield from items
            return
        yield from progress(items, description, total)
