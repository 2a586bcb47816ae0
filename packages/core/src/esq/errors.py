"""Errors a user can cause, and the one line any error prints as (the CLI shows it without a
traceback)."""

from __future__ import annotations

import errno
import os
import signal

WORKER_TRACEBACK = "Original Traceback (most recent call last):"


class EsqError(Exception):
    """Base class: the message names the file, field or value at fault and how to fix it."""


class ConfigError(EsqError):
    """A configuration file, option or ``--set`` value is wrong."""


class UnknownNameError(ConfigError):
    """A pipeline, component or option name that nothing installed provides."""


class PluginError(EsqError):
    """A plugin could not be loaded, or it broke a rule of the plugin system."""


class DataError(EsqError):
    """Input data is missing or malformed."""


class CheckpointError(EsqError):
    """A checkpoint or weights file is missing or cannot be loaded."""


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run. Like ``KeyboardInterrupt`` it is not an
    ``Exception``, so no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


ENVIRONMENT_FIXES = {
    errno.EACCES: "make it writable or choose another folder",
    errno.EPERM: "make it writable (chattr -i, chmod) or choose another folder",
    errno.EROFS: "the file system is read-only: choose another folder",
    errno.ENOSPC: "the disk is full: free space or choose another folder",
    errno.EDQUOT: "the disk quota is exceeded: free space or choose another folder",
    errno.ENAMETOOLONG: "the name is too long for the file system: choose a shorter name",
    errno.ENOTDIR: "a file stands where a folder is needed: move it or choose another folder",
    errno.EEXIST: "a file stands where a folder is needed: move it or choose another folder",
    errno.EISDIR: "a folder stands where a file is needed: move it or choose another path",
    errno.ENOENT: "check the path",
}


def _environment_message(error: OSError) -> str | None:
    """``error`` as a line naming the path and the fix, when it is the file system's doing."""
    fix = ENVIRONMENT_FIXES.get(error.errno or -1)
    if fix is None or error.filename is None:
        return None
    path = os.fsdecode(error.filename)
    reason = error.strerror or os.strerror(error.errno or 0)
    return f"{path}: {reason.lower()}; {fix}"


def _worker_error(error: Exception) -> str | None:
    """The original error's own line, when ``error`` was re-raised from a DataLoader worker
    process (torch puts the worker's whole traceback into the message)."""
    text = str(error)
    if WORKER_TRACEBACK not in text:
        return None
    last = text.rstrip().splitlines()[-1]
    name, _, message = last.partition(": ")
    return message if name.rsplit(".", 1)[-1] == type(error).__name__ else last


def error_line(error: BaseException) -> str:
    """The message of ``error`` in one line (line breaks become spaces): an ``EsqError``'s own,
    a file-system error's path and fix, or for anything else a hint that it is esq's bug and
    ``--debug`` shows where.

    >>> error_line(EsqError("runs.toml: no such file"))
    'runs.toml: no such file'
    >>> error_line(PermissionError(13, "Permission denied", "/data/runs"))
    '/data/runs: permission denied; make it writable or choose another folder'
    """
    message = _worker_error(error) if isinstance(error, Exception) else None
    notes = list(getattr(error, "__notes__", []))
    if isinstance(error, EsqError | RunInterrupted):
        message = message or str(error)
    elif isinstance(error, OSError) and (environment := _environment_message(error)):
        message = environment
    else:
        message = f"unexpected {type(error).__name__}: {message or error}"
        notes.insert(0, "run again with --debug for the traceback")
    notes = "; ".join(notes)
    return " ".join((f"{message} ({notes})" if notes else message).split())
