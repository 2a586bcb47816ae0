"""Putting a newly built ``lmdb/<split>`` folder in place of the old one so that, whenever the
process dies, one of the two is there under ``lmdb/<split>``, and cleaning what a killed build
left behind.

The new folder is built next to its target (``lmdb/.<split>.<id>.tmp``) and swapped in with one
atomic exchange of the two names (Linux ``renameat2(RENAME_EXCHANGE)``, macOS
``renamex_np(RENAME_SWAP)``); the old copy, now under the temporary name, is deleted. Where the
file system cannot exchange, the old folder is renamed aside (``lmdb/.<split>.<id>.old``) and the
new one renamed in: a process killed between the two renames leaves no ``lmdb/<split>``, and the
next build or read renames the old copy back (:func:`clean_leftovers`).

A build holds an exclusive ``flock`` on the ``lmdb`` folder; cleaning takes it too, so a reader
never deletes the temporary folder of a build still running.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from esq import DataError

LEFTOVER = re.compile(r"\.(?P<split>.+)\.[0-9a-f]{12}\.(?P<kind>tmp|old)")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAME_SWAP = 2  # macOS sys/stdio.h


def new_folder(parent: Path, prefix: str, suffix: str) -> Path:
    """A new, empty folder ``parent/<prefix>.<12 hex>.<suffix>`` with the usual permissions
    (``mkdtemp`` makes it private)."""
    while True:
        folder = parent / f"{prefix}.{uuid.uuid4().hex[:12]}.{suffix}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def exchange(first: Path, second: Path) -> bool:
    """Swap the names of two existing paths in one atomic step; ``False`` (nothing done) where the
    system or the file system cannot.

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a").write_text("a"), (folder / "b").write_text("b")
    >>> exchange(folder / "a", folder / "b") is False or (folder / "a").read_text() == "b"
    True
    """
    if sys.platform.startswith("linux"):
        name, arguments = "renameat2", (_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    elif sys.platform == "darwin":
        name, arguments = "renamex_np", (os.fsencode(first), os.fsencode(second), _RENAME_SWAP)
    else:
        return False
    function = getattr(ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True), name, None)
    if function is None:
        return False
    if function(*arguments) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), os.fspath(second))


def install_folder(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``, replacing what is there; at every moment ``target`` is
    the old folder or the new one (or, where the file system cannot exchange names, the old one
    is under ``.<name>.<id>.old`` for :func:`clean_leftovers` to restore)."""
    if not os.path.lexists(target):
        os.rename(new, target)
        return
    if exchange(new, target):
        shutil.rmtree(new)  # it now holds the old folder
        return
    old = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.old"
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old)


@contextlib.contextmanager
def build_lock(lmdb_dir: Path, *, wait: bool = False) -> Iterator[bool]:
    """An exclusive ``flock`` on the folder while the block runs; yields whether it was taken
    (``False``: another build holds it). Where ``fcntl`` is missing, nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield True
        return
    descriptor = os.open(lmdb_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def clean_leftovers(lmdb_dir: Path, *, locked: bool = False) -> None:
    """What a killed build left in ``lmdb_dir``: a temporary folder is deleted; an old copy whose
    split has no folder (killed between the two renames) is renamed back, else deleted. Nothing is
    done while another build holds the lock. A leftover that cannot be restored (a read-only
    folder) raises ``DataError`` naming it; one that merely cannot be deleted is left.

    >>> import pathlib, tempfile
    >>> lmdb_dir = pathlib.Path(tempfile.mkdtemp())
    >>> (lmdb_dir / ".valid.0123456789ab.old").mkdir()
    >>> (lmdb_dir / ".valid.ba9876543210.tmp").mkdir()
    >>> clean_leftovers(lmdb_dir)
    >>> sorted(path.name for path in lmdb_dir.iterdir())
    ['valid']
    """
    if not lmdb_dir.is_dir():
        return
    with contextlib.ExitStack() as stack:
        if not locked and not stack.enter_context(build_lock(lmdb_dir)):
            return
        leftovers = [match for match in map(LEFTOVER.fullmatch, sorted(os.listdir(lmdb_dir))) if match is not None]
        for match in sorted(leftovers, key=lambda found: found.group("kind") != "old"):  # restore before deleting
            path, split = lmdb_dir / match.string, match.group("split")
            target = lmdb_dir / split
            if match.group("kind") == "old" and not os.path.lexists(target):
                try:
                    os.rename(path, target)
                except OSError as error:
                    raise DataError(
                        f"{path}: the old LMDB of split {split!r}, left by a killed `esq clip build-lmdb`, "
                        f"cannot be renamed back to {target} ({error.strerror}); rename it yourself or build again"
                    ) from None
            else:
                shutil.rmtree(path, ignore_errors=True)


def old_copy(lmdb_dir: Path, split: str) -> Path | None:
    """An old copy of ``split`` a killed or running build left aside (see :func:`install_folder`)."""
    if not lmdb_dir.is_dir():
        return None
    for name in sorted(os.listdir(lmdb_dir)):
        match = LEFTOVER.fullmatch(name)
        if match is not None and match.group("split") == split and match.group("kind") == "old":
            return lmdb_dir / name
    return None
