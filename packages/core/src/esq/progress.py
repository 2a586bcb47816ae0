"""Progress of a long wait, on stderr: a rich bar on a terminal; elsewhere (a log file, a pipe,
CI) one line every ``ESQ_PROGRESS_SECONDS`` seconds (10 by default) with done/total, the time
spent and the time left, and a last line when the wait ends.

>>> import io
>>> stream = io.StringIO()
>>> with Progress("features", total=4, stream=stream, every=0) as progress:
...     progress.advance(3)
>>> stream.getvalue().splitlines()[0].split(",")[0]
'features: 3/4 (75%)'
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from esq.errors import ConfigError

T = TypeVar("T")
SECONDS_VARIABLE = "ESQ_PROGRESS_SECONDS"
DEFAULT_SECONDS = 10.0


def line_interval() -> float:
    """Seconds between two progress lines off a terminal (``ESQ_PROGRESS_SECONDS``)."""
    text = os.environ.get(SECONDS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigError(f"{SECONDS_VARIABLE}={text!r} is not a number of seconds; set it to e.g. 10, or unset it")
    return seconds


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _terminal_bar(description: str, total: int | None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from esq.console import stderr

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )
    bar.start()
    return bar, bar.add_task(description, total=total)


class Progress:
    """``done`` of ``total`` steps of one task (``total`` may be unknown: ``None``).

    ``stream`` given (or stderr not a terminal): plain lines every ``every`` seconds (default
    ``ESQ_PROGRESS_SECONDS``), the first once ``every`` seconds have passed, and a closing line
    if any was printed. Otherwise a transient rich bar on stderr.
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        *,
        done: int = 0,
        stream: IO[str] | None = None,
        every: float | None = None,
    ) -> None:
        from esq.console import stderr

        self.description, self.total, self.done = description, total, done
        self.every = line_interval() if every is None else every
        self.stream = stream
        self.started = self.last_line = time.monotonic()
        self.first_done = done
        self.lines = 0
        self.bar = None
        if stream is None and stderr.is_terminal:
            self.bar, self.task = _terminal_bar(description, total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close(stopped=kind is not None)

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        """``steps`` more done; ``description`` replaces the task's name (an epoch number, say)."""
        self.done += steps
        if description is not None:
            self.description = description
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, description=self.description)
            return
        now = time.monotonic()
        if now - self.last_line >= self.every:
            self.last_line = now
            self._line(self._status(now))

    def close(self, stopped: bool = False) -> None:
        """End the bar, or print the closing line: ``N done in T``, or where the wait was
        ``stopped`` (an error, a signal) ``stopped at N/TOTAL after T``."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        elif self.lines:
            elapsed = _clock(time.monotonic() - self.started)
            count = f"{self.done}/{self.total}" if self.total else str(self.done)
            self._line(f"stopped at {count} after {elapsed}" if stopped else f"{self.done} done in {elapsed}")

    def _status(self, now: float) -> str:
        elapsed = now - self.started
        if not self.total:
            return f"{self.done} done, {_clock(elapsed)} elapsed"
        status = f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%), {_clock(elapsed)} elapsed"
        rate = (self.done - self.first_done) / elapsed if elapsed > 0 else 0.0
        if rate > 0 and self.done < self.total:
            status += f", about {_clock((self.total - self.done) / rate)} left"
        return status

    def _line(self, status: str) -> None:
        from esq.console import stderr

        self.lines += 1
        line = f"{self.description}: {status}"
        if self.stream is None:
            stderr.print(line, markup=False, highlight=False)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` showing progress on stderr (see ``Progress``); ``total`` defaults
    to ``len(items)`` when it has one."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(description, total) as shown:
        for item in items:
            yield item
            shown.advance()
