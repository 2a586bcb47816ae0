"""Runs a pipeline in its own directory: ``<output_dir>/<pipeline>/<timestamp>-<name>/``.

The directory holds the resolved ``config.toml`` (``esq run PIPELINE --config`` on it repeats
the run), ``run.log``, ``results.json`` (with the run's ``status``, also when it failed or was
interrupted) and a tidy ``results.csv``; every file is written atomically.

Lightning's ``ddp`` strategy starts the same command again for each further local process. A
pipeline that trains sets ``ESQ_RUN_DIRECTORY`` (``share_run_directory``) before it starts the
trainer, so those processes (``LOCAL_RANK`` > 0) work in the first one's directory: they log to
``run-rank<N>.log`` and leave the config, the results and the console to the first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from esq.config import config_to_dict, write_config
from esq.console import OnceFilter
from esq.errors import ConfigError, DataError, PluginError, RunInterrupted, error_line
from esq.files import json_ready, to_json, write_atomic
from esq.output import rows_to_csv
from esq.plugins import Plugins, core_version
from esq.results import FAILED, Results, RunContext
from esq.run_directories import RUN_LOG, hold, new_run_directory
from esq.seeding import seed_everything
from esq.specs import PipelineSpec

log = logging.getLogger("esq.run")
RUN_DIRECTORY_VARIABLE = "ESQ_RUN_DIRECTORY"
INTERRUPTING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Run:
    """A finished run: where it is and what it found."""

    directory: Path
    results: Results
    worker: bool = False  # a further process of a multi-process run: the first one reports


def worker_rank() -> int:
    """This process's ``LOCAL_RANK`` when it is a further process of a shared run, else 0.
    ``ESQ_RUN_DIRECTORY`` with a rank but without a launcher's variables, or naming no run, is
    refused: such a process would otherwise do nothing and exit 0."""
    rank, shared = os.environ.get("LOCAL_RANK", "0"), os.environ.get(RUN_DIRECTORY_VARIABLE)
    if not shared or not rank.isdigit() or int(rank) == 0:
        return 0
    launched = all(os.environ.get(name) for name in ("WORLD_SIZE", "MASTER_ADDR"))
    if not launched or not (Path(shared) / "config.toml").is_file():
        raise ConfigError(
            f"{RUN_DIRECTORY_VARIABLE}={shared} with LOCAL_RANK={rank}, but this process was not started by a "
            f"multi-process run (no WORLD_SIZE/MASTER_ADDR, or no config.toml there): unset {RUN_DIRECTORY_VARIABLE}"
        )
    return int(rank)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise ``RunInterrupted`` while the block runs (in the main thread),
    so a run ends through its ``finally`` and ``except`` clauses, and the previous handlers
    come back after it. Lightning chains its own SIGTERM handler in front of this one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    installer = os.getpid()

    def interrupt(signum: int, _frame: object) -> None:
        if os.getpid() == installer:
            raise RunInterrupted(signum)
        # A forked child (a DataLoader worker) behaves as without this handler.
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous = {number: signal.signal(number, interrupt) for number in INTERRUPTING}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def share_run_directory(directory: Path) -> None:
    """Let the processes a trainer starts from this command work in ``directory`` (see above)."""
    os.environ[RUN_DIRECTORY_VARIABLE] = str(directory)


class RunLogFilter(OnceFilter):
    """What ``run.log`` holds: everything from esq's loggers and warnings from any library, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        wanted = record.name == "esq" or record.name.startswith("esq.") or record.levelno >= logging.WARNING
        return wanted and super().filter(record)


def _json_problem(value: Any) -> str | None:
    try:
        json.dumps(json_ready(value), allow_nan=False)
    except (TypeError, ValueError) as error:
        return str(error)
    return None


def _checked(spec: PipelineSpec, results: Any) -> Results:
    """``results`` if it is what ``results.json`` and ``results.csv`` can hold, else a
    ``PluginError`` naming the pipeline and the row, key or value at fault."""
    owner = f"pipeline {spec.name!r} ({spec.distribution})"
    if not isinstance(results, Results):
        raise PluginError(f"{owner} returned {type(results).__name__}, expected esq.Results")
    for field_name, rows in (("rows", results.rows), ("table", results.table)):
        if field_name == "table" and rows is None:
            continue
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise PluginError(f"{owner} returned Results.{field_name} that is not a list of dicts")
        for index, row in enumerate(rows):
            for key, value in row.items():
                if not isinstance(key, str):
                    raise PluginError(f"{owner}: Results.{field_name}[{index}] has key {key!r}; keys are strings")
                if problem := _json_problem(value):
                    raise PluginError(f"{owner}: Results.{field_name}[{index}][{key!r}] cannot be saved: {problem}")
    if not isinstance(results.summary, dict) or (problem := _json_problem(results.summary)):
        raise PluginError(f"{owner}: Results.summary cannot be saved: {problem or 'not a dict'}")
    if results.failed_rows:
        for row in results.rows:
            row.setdefault("status", "ok")
    return results


def _outcome_error(spec: PipelineSpec, results: Results) -> DataError | None:
    """Why ``results`` is not a result at all: no rows, or none that was computed."""
    if not results.rows:
        return DataError(f"pipeline {spec.name!r} produced no result rows; run.log says what it skipped")
    if results.status == FAILED:
        return DataError(f"every result row failed; the first: {results.failed_rows[0].get('error')}")
    return None


def run_pipeline(
    spec: PipelineSpec, config: Any, output_dir: Path, plugins: Plugins, show_progress: bool = True
) -> Run:
    """Check ``config`` against the installed components (``plugins``), then run ``spec`` on it in
    a new run directory under ``output_dir``. A config the check refuses leaves no directory.

    ``results.json`` records the run's ``status``: ``ok``, ``partial`` (some rows failed: the
    run returns), or ``failed`` and ``interrupted`` (the error is raised after it is written)."""
    spec.check_config(config, plugins)
    rank = worker_rank()
    if rank:
        directory = Path(os.environ[RUN_DIRECTORY_VARIABLE])
    else:
        directory = new_run_directory(Path(output_dir), spec.name, config.name)
    handler = logging.FileHandler(directory / (f"run-rank{rank}.log" if rank else RUN_LOG), encoding="utf-8")
    if not rank:
        hold(handler.stream)
        header = f"esq run {spec.name}: resolved config ({spec.distribution} {spec.version})"
        write_config(directory / "config.toml", config, header)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RunLogFilter())
    esq_log, root = logging.getLogger("esq"), logging.getLogger()
    root.addHandler(handler)
    previous_level = esq_log.level
    esq_log.setLevel(logging.DEBUG)
    started = time.time()
    results, status, error = Results(), "failed", None
    try:
        with interruptible():
            log.info("esq %s: run %s in %s", core_version(), spec.name, directory)
            seed_everything(config.seed)
            try:
                returned = spec.run(
                    config, RunContext(directory, logging.getLogger(f"esq.{spec.name}"), plugins, show_progress)
                )
            except KeyboardInterrupt:  # raised by code, not by a signal (those raise RunInterrupted)
                raise RunInterrupted(signal.SIGINT) from None
            except (Exception, RunInterrupted):
                raise
            except BaseException as escape:  # sys.exit, or a BaseException of the plugin's own
                how = (
                    f"called sys.exit({escape.code!r})"
                    if isinstance(escape, SystemExit)
                    else f"raised {type(escape).__name__} (a BaseException): {escape}"
                )
                raise PluginError(
                    f"pipeline {spec.name!r} ({spec.distribution}) {how} instead of returning esq.Results or raising "
                    "an error"
                ) from None
            results = _checked(spec, returned)
            error, status = _outcome_error(spec, results), results.status
            if error is not None:
                raise error
        log.info("finished in %.1f s: %d result rows, status %s", time.time() - started, len(results.rows), status)
    except RunInterrupted as interruption:
        status, error = "interrupted", interruption
        log.info("run %s %s after %.1f s", spec.name, interruption, time.time() - started)
        raise
    except Exception as failure:
        # The traceback goes to run.log only; the console shows the error's one line.
        error = failure
        log.debug("run %s failed: %s", spec.name, failure, exc_info=True)
        log.info("run %s failed: %s", spec.name, error_line(failure))
        failure.add_note(f"run log: {directory / 'run.log'}")
        raise
    finally:
        try:
            if not rank:  # while run.log is still held, so no starting run takes this one for dead
                _write_results(directory, spec, config, plugins, started, status, results, error)
        finally:
            root.removeHandler(handler)
            esq_log.setLevel(previous_level)
            handler.close()
    return Run(directory, results, worker=bool(rank))


def _write_results(
    directory: Path,
    spec: PipelineSpec,
    config: Any,
    plugins: Plugins,
    started: float,
    status: str,
    results: Results,
    error: BaseException | None,
) -> None:
    document = {
        "pipeline": spec.name,
        "run": directory.name,
        "status": status,
        **({"error": error_line(error)} if error is not None else {}),
        "esq_version": core_version(),
        "started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 3),
        "config": config_to_dict(config),
        "plugins": plugins.describe(),
        "summary": results.summary,
        "rows": results.rows,
    }
    write_atomic(directory / "results.json", to_json(document) + "\n")
    write_atomic(directory / "results.csv", rows_to_csv(results.rows))
