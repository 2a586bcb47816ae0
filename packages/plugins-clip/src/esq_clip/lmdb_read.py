"""Reading a split's LMDB form, as cn-clip's ``build_lmdb_dataset.py`` writes it:

- ``lmdb/{split}/imgs``: key ``str(image_id)`` (UTF-8) → the base64 bytes, and ``b"num_images"``;
- ``lmdb/{split}/pairs``: key ``str(index)`` → ``pickle.dumps((image_id, text_id, text))``, one per
  (text, image) pair, and ``b"num_samples"`` (both counts decimal UTF-8).

The gallery is in the LMDB's key order (bytewise: ``"100" < "20" < "3"``), the order in which
cn-clip's evaluation reads it. Pairs are unpickled by a reader that constructs and calls nothing.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esq import DataError
from esq_clip.fields import INTEGER, is_integer, shown
from esq_clip.images import decode_image

if TYPE_CHECKING:
    from PIL import Image


def require_lmdb(path: Path, part: str) -> None:
    """A ``DataError`` unless ``path`` is a folder holding a ``data.mdb`` (where the split's
    ``part`` LMDB should be)."""
    if not path.is_dir():
        raise DataError(
            f"{path}: no such LMDB folder (expected the split's '{part}' LMDB there); "
            "build it with `esq clip build-lmdb`"
        )
    if not (path / "data.mdb").is_file():
        raise DataError(
            f"{path / 'data.mdb'}: no such file (the split's '{part}' LMDB); rebuild it with `esq clip build-lmdb`"
        )


def open_lmdb(path: Path, part: str) -> Any:
    """The LMDB at ``path``, read-only, after checking that ``data.mdb`` holds every page the
    database says it has: reading a page past the end of a truncated file would kill the process
    (SIGBUS) instead of raising."""
    import lmdb

    require_lmdb(path, part)
    fix = "rebuild it with `esq clip build-lmdb`"
    data = path / "data.mdb"
    try:
        environment = lmdb.open(str(path), readonly=True, create=False, lock=False, readahead=False, meminit=False)
    except lmdb.Error as error:
        reason = _one_line(error).removeprefix(f"{path}: ")
        raise DataError(f"{data}: not a readable LMDB ({reason}); {fix}") from None
    # open() read the two meta pages with read(2); info() and stat() use them, no data page
    needed = (environment.info()["last_pgno"] + 1) * environment.stat()["psize"]
    size = os.path.getsize(data)
    if size < needed:
        environment.close()
        raise DataError(f"{data}: truncated: {size} bytes, but the database needs {needed}; {fix}")
    return environment


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def read_count(transaction: Any, path: Path, key: bytes) -> int:
    value = transaction.get(key)
    if value is None or not INTEGER.fullmatch(value):
        found = "missing" if value is None else f"{shown(value.decode(errors='replace'))}, not a count"
        raise DataError(f"{path}: key {key.decode()} is {found}; rebuild the LMDB with `esq clip build-lmdb`")
    return int(value)


class LmdbImages:
    """An ``imgs`` LMDB, opened read-only on first use in each process (handles do not survive a
    fork or pickling, so a copy sent to a worker opens its own)."""

    kind = "LMDB"

    def __init__(self, path: Path, image_ids: list[int]) -> None:
        self.path = path
        self.image_ids = image_ids
        self._known = set(image_ids)
        self._environment: Any = None
        self._pid = -1

    @classmethod
    def open(cls, path: Path) -> LmdbImages:
        """Checks the keys (each an integer id, and ``num_images`` matching their count); reads no
        image."""
        environment = open_lmdb(path, "imgs")
        try:
            with environment.begin() as transaction:
                count = read_count(transaction, path, b"num_images")
                image_ids = []
                for key in transaction.cursor().iternext(keys=True, values=False):
                    if key == b"num_images":
                        continue
                    if not INTEGER.fullmatch(key):
                        raise DataError(
                            f"{path}: key {shown(key.decode(errors='replace'))} is not an integer image id; "
                            "rebuild the LMDB with `esq clip build-lmdb`"
                        )
                    image_ids.append(int(key))
        finally:
            environment.close()
        if count != len(image_ids):
            raise DataError(
                f"{path}: num_images says {count} but the LMDB holds {len(image_ids)} images; "
                "rebuild it with `esq clip build-lmdb`"
            )
        if not image_ids:
            raise DataError(f"{path}: no images; rebuild the LMDB with `esq clip build-lmdb`")
        return cls(path, image_ids)

    def read(self, ids: list[int]) -> list[Image.Image]:
        for image_id in ids:
            if image_id not in self._known:
                raise DataError(f"{self.path}: no image {image_id!r}; ask for the ids of this split's images")
        if self._environment is None or self._pid != os.getpid():
            self._environment = open_lmdb(self.path, "imgs")
            self._pid = os.getpid()
        with self._environment.begin() as transaction:
            encoded = [transaction.get(str(image_id).encode()) for image_id in ids]
        return [
            decode_image(data, f"{self.path}, key '{image_id}': image {image_id}")
            for image_id, data in zip(ids, encoded, strict=True)
        ]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_environment": None, "_pid": -1}


def read_pairs(path: Path, gallery: set[int], gallery_path: Path) -> list[tuple[int, str, list[int]]]:
    """The texts, rebuilt from a ``pairs`` LMDB: pairs grouped by text id, in first-seen order."""
    texts: dict[int, tuple[int, str, list[int]]] = {}
    environment = open_lmdb(path, "pairs")
    try:
        with environment.begin() as transaction:
            count = read_count(transaction, path, b"num_samples")
            for index in range(count):
                key = str(index).encode()
                data = transaction.get(key)
                where = f"{path}, key '{index}'"
                if data is None:
                    raise DataError(
                        f"{where}: missing (num_samples says {count}); rebuild the LMDB with `esq clip build-lmdb`"
                    )
                image_id, text_id, text = load_pair(data, where)
                if image_id not in gallery:
                    raise DataError(
                        f"{where}: text {text_id} names image {image_id}, which is not in {gallery_path}; "
                        "rebuild the LMDB from matching files with `esq clip build-lmdb`"
                    )
                known = texts.setdefault(text_id, (text_id, text, []))
                if known[1] != text:
                    raise DataError(
                        f"{where}: text {text_id} is {text!r} here and {known[1]!r} before; "
                        "rebuild the LMDB with `esq clip build-lmdb`"
                    )
                known[2].append(image_id)
    finally:
        environment.close()
    if not texts:
        raise DataError(f"{path}: no pairs; rebuild the LMDB with `esq clip build-lmdb`")
    return list(texts.values())


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data only: every reference to a class or function is refused, so nothing
    can be constructed or called while loading (tuples, ints and strings need no such reference)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def load_pair(data: bytes, where: str = "pair") -> tuple[int, int, str]:
    """One ``pairs`` LMDB value, ``pickle.dumps((image_id, text_id, text))``, read safely.

    The official format is a pickle, and ``pickle.loads`` of a crafted file runs any code it names.
    This reader refuses every class or function reference, so loading builds plain data and calls
    nothing; then it accepts exactly a tuple of two integers and a string. Anything else raises
    ``DataError`` naming ``where``.

    >>> import pickle
    >>> load_pair(pickle.dumps((7, 1, "猫")))
    (7, 1, '猫')
    >>> load_pair(pickle.dumps(print))
    Traceback (most recent call last):
    ...
    esq.errors.DataError: pair: not a pickled (image_id, text_id, text) (refused to load builtins.print); ...
    """
    fix = "rebuild the LMDB with `esq clip build-lmdb`"
    try:
        value = _PlainDataUnpickler(io.BytesIO(bytes(data))).load()
    except Exception as error:  # a damaged pickle can raise almost anything
        raise DataError(f"{where}: not a pickled (image_id, text_id, text) ({error}); {fix}") from None
    if not (
        type(value) is tuple
        and len(value) == 3
        and is_integer(value[0])
        and is_integer(value[1])
        and isinstance(value[2], str)
    ):
        raise DataError(f"{where}: expected (image_id, text_id, text), found {shown(value)}; {fix}")
    return value
