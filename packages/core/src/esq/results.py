"""What a pipeline returns, and what it is handed while it runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Results:
    """A pipeline's results.

    ``rows`` are tidy (one per model × metric × setting): they become ``results.csv`` and, unless
    ``table`` is given, the table printed at the end. ``summary`` holds anything else worth
    keeping in ``results.json``; ``table`` is a shorter view to print (a ranking, say).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    table: list[dict[str, Any]] | None = None


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
        """Where to write the run's file ``name`` (plots, predictions...)."""
        return self.directory / name

    def progress(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate over ``items`` with a progress bar on stderr."""
        if not self.show_progress:
            yield from items
            return
        from rich.progress import track

        from esq.console import stderr

        yield from track(
            items, description=description, total=total, console=stderr, transient=True, disable=not stderr.is_terminal
        )
