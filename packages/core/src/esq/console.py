"""The two consoles: results go to stdout, diagnostics (warnings, progress, logs) to stderr.

rich honours ``NO_COLOR``, and writes plain text when the stream is not a terminal.
"""

from __future__ import annotations

import logging

from rich.console import Console

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


class OnceFilter(logging.Filter):
    """Lets each message through once: a metric that warns at every level of a sweep says it once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True
