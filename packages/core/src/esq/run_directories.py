"""Run directories: a fresh one per run, held while the run lives, and what a killed run left
behind cleaned when the next run of the pipeline starts.

A live run holds an exclusive ``flock`` on its ``run.log`` (the kernel releases it when the
process ends, however it ends), so a run directory whose log nobody holds is finished or dead;
its stray temporary files (``.NAME.*.tmp``, from a write that never reached its rename) can go.
"""

from __future__ import annotations

import fcntl
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import IO

log = logging.getLogger("esq.run")
RUN_LOG = "run.log"
TEMPORARY = ".*.tmp"
BEING_MADE_SECONDS = 60  # a directory without run.log younger than this may be a run starting now


def new_run_directory(output_dir: Path, pipeline: str, name: str) -> Path:
    """A fresh ``<output_dir>/<pipeline>/<timestamp>-<name>`` (``-2``, ``-3``... if taken)."""
    stem = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{name or pipeline}"
    parent = output_dir / pipeline
    parent.mkdir(parents=True, exist_ok=True)
    clean_abandoned_runs(parent)
    for attempt in range(1, 1000):
        directory = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            directory.mkdir()
            return directory
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: too many runs named {stem}")


def hold(stream: IO[str]) -> None:
    """Mark the run that writes ``stream`` (its ``run.log``) as alive until the process ends."""
    fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _is_alive(directory: Path) -> bool:
    run_log = directory / RUN_LOG
    if not run_log.exists():
        return time.time() - directory.stat().st_mtime < BEING_MADE_SECONDS
    with open(run_log, "rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def clean_abandoned_runs(parent: Path) -> list[Path]:
    """Remove the temporary files that runs no longer alive left under ``parent``; the paths removed."""
    removed = []
    for directory in sorted(path for path in parent.iterdir() if path.is_dir()):
        leftovers = list(directory.rglob(TEMPORARY))
        if not leftovers or _is_alive(directory):
            continue
        for path in leftovers:
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d temporary files that killed runs left in %s", len(removed), parent)
    return removed

