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

from esq.errors import ConfigError

log = logging.getLogger("esq.run")
RUN_LOG = "run.log"
RUN_FILES = ("config.toml", RUN_LOG, "results.json", "results.csv")
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


def run_file_name(option: str, name: str, suffix: str = "") -> str:
    """``name`` if it is a plain file name (ending in ``suffix``) that a run directory can hold
    beside the runner's own files, else a ``ConfigError`` naming ``option``.

    >>> run_file_name("output", "scores.json", ".json")
    'scores.json'
    >>> run_file_name("output", "results.json", ".json")
    Traceback (most recent call last):
    ...
    esq.errors.ConfigError: output 'results.json': the run's own results.json has that name; choose another file name
    """
    if name in RUN_FILES or name.startswith("run-rank"):
        raise ConfigError(f"{option} {name!r}: the run's own {name} has that name; choose another file name")
    plain = name not in ("", ".", "..") and not any(mark in name for mark in ("/", "\\", "\0"))
    if not plain or not name.endswith(suffix) or name == suffix:
        ending = f" ending in {suffix}" if suffix else ""
        raise ConfigError(f"{option} {name!r}: a file name{ending}, without folders (written in the run directory)")
    return name


def inside_run(directory: Path, name: str) -> Path:
    """``directory / name`` if it lies inside ``directory`` and is none of the runner's own
    files, else a ``ConfigError``: what a pipeline writes stays in its run directory."""
    path = directory / name
    parts = Path(name).parts
    escapes = Path(name).is_absolute() or ".." in parts or not parts
    if escapes or not path.resolve().is_relative_to(directory.resolve()):
        raise ConfigError(f"{name!r}: esq writes only inside the run directory {directory}; choose a plain name")
    if parts[0] in RUN_FILES or parts[0].startswith("run-rank"):
        raise ConfigError(f"{name!r}: the run's own {parts[0]} has that name; choose another name")
    return path
