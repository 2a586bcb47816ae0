"""The activation cache: a backbone's raw layer outputs on an image set, stored once and read
back memory-mapped, so that changing metrics, transforms or distribution models never runs the
backbone again.

An entry is one layer of one backbone on one image set (for a degraded set: one degradation at
one level). Its folder is ``<root>/<backbone>/<layer>/<digest>/``, where ``digest`` hashes the
entry's key: the backbone, its options and weights, the layer, the preprocessing, the image set's
content hash and, for degraded sets, the degradation, its options and level. The folder holds

- ``key.json``: the key itself (written first, so ``esq cache ls`` shows unfinished entries);
- ``chunk_00000.npy`` …: ``chunk_size`` images each, every file written to a temporary name and
  renamed, so a chunk that exists is whole;
- ``entry.json``: written last; an entry without it is incomplete and is never read as valid.

A build killed half-way resumes at the first chunk it lacks, and removes the temporary files
the kill left. A build holds its entries' lock files (``<root>/_locks/<digest>.lock``, ``flock``)
while it writes them: a second build of the same entry waits for the first and then reads what
it stored, and ``esq cache rm`` refuses to remove an entry that is being built.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esq import ConfigError, DataError, to_json, write_atomic

DTYPES = ("float32", "float16")
CHUNK_NAME = "chunk_{:05d}.npy"
SPECIAL = ("_notes", "_locks")  # folders of the cache root that hold no entries


def default_root() -> Path:
    """``$ESQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/esq/activations`` (``~/.cache/esq/activations``)."""
    if os.environ.get("ESQ_CACHE_DIR"):
        return Path(os.environ["ESQ_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "esq" / "activations"


def key_digest(key: dict[str, Any]) -> str:
    """A short hash of ``key`` (canonical JSON: sorted keys, no spaces).

    >>> key_digest({"b": 1, "a": [1, 2]}) == key_digest({"a": [1, 2], "b": 1})
    True
    """
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _folder_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text) or "_"


def check_root(root: str | os.PathLike[str], option: str = "cache_dir") -> Path:
    """``root`` if the cache can live there (a folder, or a path where one can be made), else a
    ``ConfigError`` naming it: a file where a folder is needed, or a folder this user cannot write."""
    root = Path(root)
    existing = next(path for path in (root, *root.parents) if path.exists())
    if not existing.is_dir():
        raise ConfigError(f"{option} {root}: {existing} is a file, not a folder; choose another cache folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option} {root}: {existing} is not writable; make it writable or choose another cache folder"
        )
    return root


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a ``DataError`` naming the file (missing, unreadable, not JSON)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not readable as JSON ({type(error).__name__})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class CacheEntry:
    """One layer of one backbone on one image set."""

    directory: Path

    @property
    def key(self) -> dict[str, Any]:
        """``key.json``; a ``DataError`` naming the file when it is missing or damaged."""
        return _read_json(self.directory / "key.json")

    @property
    def lock_path(self) -> Path:
        return self.directory.parents[2] / "_locks" / f"{self.directory.name}.lock"

    def leftovers(self) -> list[Path]:
        """Temporary files a killed writer left (``write_atomic``'s ``.<name>.<random>.tmp``)."""
        return sorted(self.directory.glob(".*.tmp")) if self.directory.is_dir() else []

    @property
    def complete(self) -> bool:
        return (self.directory / "entry.json").is_file()

    @property
    def info(self) -> dict[str, Any]:
        """``entry.json``: count, per-image shape, dtype, chunk size, when and how fast it was built."""
        return _read_json(self.directory / "entry.json")

    def chunk_path(self, index: int) -> Path:
        return self.directory / CHUNK_NAME.format(index)

    def chunk_paths(self) -> list[Path]:
        return sorted(self.directory.glob("chunk_*.npy"))

    def has_chunk(self, index: int, rows: int) -> bool:
        """Whether chunk ``index`` exists with ``rows`` images (its header is read, not its data)."""
        path = self.chunk_path(index)
        if not path.is_file():
            return False
        try:
            return np.load(path, mmap_mode="r").shape[0] == rows
        except (OSError, ValueError):
            return False

    def chunks(self) -> list[np.ndarray]:
        """The chunks, memory-mapped read-only, in image order."""
        if not self.complete:
            raise DataError(f"{self.directory}: the cache entry is incomplete; rebuild it (esq cache build)")
        damaged = DataError(
            f"{self.directory}: the cache entry is damaged (a chunk is missing, truncated or of the wrong size, "
            f"shape or dtype, or its entry.json or key.json is unreadable); remove it with esq cache rm --backbone "
            f"{self.directory.parent.parent.name} --layer {self.directory.parent.name}, or delete the folder, "
            "and run again"
        )
        try:
            info = self.info
            chunks = [np.load(self.chunk_path(i), mmap_mode="r") for i in range(int(info["chunks"]))]
        except (OSError, ValueError, KeyError, TypeError, DataError):
            raise damaged from None
        if sum(len(chunk) for chunk in chunks) != info.get("count"):
            raise damaged
        for index, chunk in enumerate(chunks):  # a chunk of the right size but another shape or dtype
            if list(chunk.shape[1:]) != list(info.get("shape", ())) or str(chunk.dtype) != info.get("dtype"):
                found = f"{CHUNK_NAME.format(index)} holds {chunk.dtype} {tuple(chunk.shape)}"
                wanted = f"entry.json says {info.get('dtype')} (count, {', '.join(map(str, info.get('shape', ())))})"
                raise DataError(f"{str(damaged).replace('; remove it', f': {found}, {wanted}; remove it', 1)}")
        return chunks

    def size_bytes(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(path.stat().st_size for path in self.directory.iterdir() if path.is_file())


@contextlib.contextmanager
def locked(entries: Iterable[CacheEntry], *, wait: bool = True, log: logging.Logger | None = None) -> Iterator[None]:
    """Hold the lock file of each entry (in folder order, so two builds never deadlock). ``wait``:
    block until another process releases one (saying so on ``log``), else a ``DataError`` naming
    the entry being built."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one build at a time is the user's to keep
        yield
        return
    with contextlib.ExitStack() as stack:
        for entry in sorted(entries, key=lambda entry: entry.directory):
            entry.lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(entry.lock_path, "a+b"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                where = f"{entry.directory.parent.parent.name}/{entry.directory.parent.name}/{entry.directory.name}"
                if not wait:
                    raise DataError(
                        f"cache entry {where} is being built by another process ({entry.directory}); "
                        "wait for that build to finish, or stop it, and run again"
                    ) from None
                if log is not None:
                    log.info("waiting for another process building cache entry %s", where)
                fcntl.flock(handle, fcntl.LOCK_EX)
            stack.callback(fcntl.flock, handle, fcntl.LOCK_UN)
        yield


class ActivationCache:
    """Entries under ``root``, stored as ``dtype`` (``"float32"`` or ``"float16"``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, dtype: str = "float32", chunk_size: int = 64):
        if dtype not in DTYPES:
            raise ConfigError(f"cache dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        if chunk_size < 1:
            raise ConfigError(f"cache chunk_size must be at least 1, got {chunk_size}")
        self.root = Path(root) if root is not None else default_root()
        self.dtype = dtype
        self.chunk_size = chunk_size

    def entry(self, key: dict[str, Any]) -> CacheEntry:
        """The entry for ``key`` (which needs ``backbone`` and ``layer``); it may not exist yet.
        The storage dtype and chunk size are part of the key."""
        full = {**key, "dtype": self.dtype, "chunk_size": self.chunk_size}
        folder = self.root / _folder_name(str(key["backbone"])) / _folder_name(str(key["layer"]))
        return CacheEntry(folder / key_digest(full))

    def entries(self) -> list[CacheEntry]:
        """Every entry, complete, incomplete or damaged (a folder without a readable key.json), sorted by
        folder. A cache folder that is a file is a ``ConfigError``."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"cache folder {self.root} is a file, not a folder; choose another cache folder")
        if not self.root.is_dir():
            return []
        return [
            CacheEntry(path)
            for path in sorted(self.root.glob("*/*/*"))
            if path.is_dir() and path.parts[-3] not in SPECIAL
        ]

    def read_note(self, key: dict[str, Any]) -> Any:
        """A small JSON note stored under ``key`` (``_notes/``), or ``None``: what a pipeline
        learned while building a component (a backbone's preprocessing and layers), so that a run
        the cache answers entirely need not build it."""
        path = self.root / "_notes" / f"{key_digest(key)}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_note(self, key: dict[str, Any], value: Any) -> None:
        """Store a note under the notes' lock, which makes what a killed writer left in
        ``_notes/`` safe to remove first."""
        notes, lock = self.root / "_notes", self.root / "_locks" / "_notes.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+b") as handle:
            try:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX)
            except ImportError:  # no flock (Windows): leftovers stay
                pass
            else:
                for stale in notes.glob(".*.tmp"):
                    stale.unlink(missing_ok=True)
            write_atomic(notes / f"{key_digest(key)}.json", to_json(value) + "\n")

    def begin(self, entry: CacheEntry, key: dict[str, Any], about: dict[str, Any] | None = None) -> None:
        """Start or resume ``entry`` (its lock held): what a killed writer left is removed, and
        ``key.json`` written when it is missing or damaged. ``about`` (what ``esq cache ls``
        shows, such as where the images came from) is kept in ``key.json`` under ``"about"``
        but is no part of the key: it changes no digest."""
        for leftover in entry.leftovers():
            leftover.unlink(missing_ok=True)
        try:
            entry.key  # noqa: B018 - reading it is the check
        except DataError:
            described = {**key, "dtype": self.dtype, **({"about": about} if about else {})}
            write_atomic(entry.directory / "key.json", to_json(described) + "\n")

    def write_chunk(self, entry: CacheEntry, index: int, array: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array, dtype=self.dtype))
        write_atomic(entry.chunk_path(index), buffer.getvalue())

    def finish(self, entry: CacheEntry, count: int, chunks: int, seconds: float) -> None:
        first = np.load(entry.chunk_path(0), mmap_mode="r")
        info = {
            "count": count,
            "shape": list(first.shape[1:]),
            "dtype": self.dtype,
            "chunk_size": self.chunk_size,
            "chunks": chunks,
            "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(seconds, 3),
        }
        write_atomic(entry.directory / "entry.json", to_json(info) + "\n")


def remove_entries(entries: Iterable[CacheEntry]) -> int:
    """Delete entries (``entry.json`` first, so a half-removed one reads as incomplete). An entry
    that a build holds is a ``DataError`` naming it, before anything is removed."""
    entries = list(entries)
    with locked(entries, wait=False):
        for entry in entries:
            (entry.directory / "entry.json").unlink(missing_ok=True)
            shutil.rmtree(entry.directory)
    return len(entries)


Extract = Callable[[int, int, Sequence[str]], dict[str, np.ndarray]]


def cached_activations(
    cache: ActivationCache | None,
    keys: dict[str, dict[str, Any]],
    count: int,
    extract: Extract,
    *,
    label: str,
    log: logging.Logger,
    chunk_size: int = 64,
    about: dict[str, Any] | None = None,
    progress: Callable[[Iterable[Any], str, int], Iterable[Any]] | None = None,
) -> dict[str, list[np.ndarray]]:
    """Each layer's activations on ``count`` images, as chunks, from the cache where it has them.

    ``keys`` maps each layer to its cache key; ``extract(start, stop, layers)`` runs the backbone
    on images ``start`` … ``stop - 1`` and returns ``{layer: array}``. Without a cache (``None``)
    everything is extracted in memory. Logs ``CACHE HIT`` or ``CACHE MISS`` with ``label``.
    ``about`` goes to each new entry's ``key.json`` (:meth:`ActivationCache.begin`);
    ``progress(items, description, total)`` (a run's ``context.progress``) wraps the loop over
    the chunks the backbone runs on.
    """

    def chunks(bounds: list[tuple[int, int]]) -> Iterable[tuple[int, tuple[int, int]]]:
        numbered = enumerate(bounds)
        return progress(numbered, f"{label}: extracting", len(bounds)) if progress is not None else numbered

    if count < 1:
        raise DataError(f"{label}: no images to extract activations from")
    size = cache.chunk_size if cache is not None else chunk_size
    bounds = [(start, min(start + size, count)) for start in range(0, count, size)]
    if cache is None:
        parts: dict[str, list[np.ndarray]] = {layer: [] for layer in keys}
        for _, (start, stop) in chunks(bounds):
            for layer, array in extract(start, stop, list(keys)).items():
                parts[layer].append(array)
        return parts
    entries = {layer: cache.entry(key) for layer, key in keys.items()}
    missing = [layer for layer, entry in entries.items() if not entry.complete]
    if not missing:
        log.info("CACHE HIT %s: %s", label, ", ".join(entries))
        return {layer: entry.chunks() for layer, entry in entries.items()}
    with locked([entries[layer] for layer in missing], log=log):
        missing = [layer for layer in missing if not entries[layer].complete]  # another build may have finished
        if missing:
            log.info("CACHE MISS %s: extracting %s into %s", label, ", ".join(missing), cache.root)
            started = time.perf_counter()
            for layer in missing:
                cache.begin(entries[layer], keys[layer], about)
            for index, (start, stop) in chunks(bounds):
                todo = [layer for layer in missing if not entries[layer].has_chunk(index, stop - start)]
                if todo:
                    for layer, array in extract(start, stop, todo).items():
                        cache.write_chunk(entries[layer], index, array)
            for layer in missing:
                cache.finish(entries[layer], count, len(bounds), time.perf_counter() - started)
    return {layer: entry.chunks() for layer, entry in entries.items()}
