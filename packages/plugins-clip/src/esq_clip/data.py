"""Chinese-CLIP retrieval data: a split's gallery images and text queries, from TSV + jsonl or LMDB.

The layout under ``<datapath>/datasets/<name>/`` is Chinese-CLIP's:

- ``{split}_imgs.tsv``: one line per image, ``image_id<TAB>base64 of the encoded image`` (the
  standard or the URL-safe alphabet, with padding; cn-clip decodes with ``urlsafe_b64decode``);
- ``{split}_texts.jsonl``: one line per text, ``{"text_id": int, "text": str, "image_ids": [int, ...]}``;
- ``lmdb/{split}/imgs``: key ``str(image_id)`` (UTF-8) → the base64 bytes, and ``b"num_images"``;
- ``lmdb/{split}/pairs``: key ``str(index)`` → ``pickle.dumps((image_id, text_id, text))``, one per
  (text, image) pair in the jsonl's order, and ``b"num_samples"`` (both counts decimal UTF-8), as
  cn-clip's ``preprocess/build_lmdb_dataset.py`` writes them.

``open_split`` reads either form and checks it whole when it opens; images stay on disk (TSV byte
offsets or LMDB keys) and are decoded when asked for. Reading an LMDB split, the gallery is in the
LMDB's key order (bytewise: ``"100" < "20" < "3"``), the order in which cn-clip's evaluation reads
it, so feature files line up with the official ones. The texts come from ``{split}_texts.jsonl``
when it is there, as the official evaluation reads them, and otherwise are rebuilt from the
``pairs`` LMDB. ``build_lmdb`` (``esq clip build-lmdb``) converts TSV + jsonl to LMDB.

Blank lines: the newline that ends the last line is normal; any empty line (one in the middle, or
an extra empty line at the end) is an error that gives its line number.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> datapath = pathlib.Path(tempfile.mkdtemp())
>>> _ = write_split(
...     datapath / "datasets" / "toy",
...     "valid",
...     {1: Image.new("RGB", (8, 8), "red"), 2: Image.new("RGB", (8, 8), "blue")},
...     [(10, "红色的方块", [1]), (11, "a blue square", [2])],
... )
>>> split = open_split(datapath, "toy", "valid")
>>> split
RetrievalSet('toy/valid': 2 images, 2 texts, from TSV)
>>> split.image(2).getpixel((0, 0))
(0, 0, 255)
>>> build_lmdb(datapath / "datasets" / "toy", ["valid"])
{'valid': (2, 2)}
>>> open_split(datapath, "toy", "valid").texts == split.texts
True
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import pickle
import re
import shutil
import uuid
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from esq import ConfigError, DataError
from esq import open_atomic

if TYPE_CHECKING:
    from PIL import Image

Source = Literal["auto", "tsv", "lmdb"]

_INTEGER = re.compile(rb"0|-?[1-9][0-9]*")
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_BATCH_BYTES = 64 * 2**20  # an LMDB write transaction holds at most about this much
_BATCH_ENTRIES = 1000
_FIRST_MAP_SIZE = 64 * 2**20  # bytes; the map doubles whenever it fills
_TSV_FORMAT = "lines image_id<TAB>base64 of the encoded image"
_JSONL_FORMAT = 'lines {"text_id": int, "text": str, "image_ids": [int, ...]}'


@dataclass(frozen=True, repr=False)
class RetrievalSet:
    """A split's gallery images and text queries.

    ``image_ids`` are in file order (LMDB: key order); ``texts`` are ``(text_id, text, image_ids)``
    in file order. Images are read from disk and decoded when asked for.

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_split(folder / "datasets" / "toy", "test", {7: Image.new("RGB", (4, 4))}, [(1, "黑", [7])])
    >>> split = open_split(folder, "toy", "test")
    >>> split.image_ids, split.texts, split.image_to_texts()
    ([7], [(1, '黑', [7])], {7: [1]})
    """

    name: str
    image_ids: list[int]
    texts: list[tuple[int, str, list[int]]]
    _store: _TsvImages | _LmdbImages | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        origin = f"from {self._store.kind}" if self._store is not None else "no images on disk"
        return f"RetrievalSet({self.name!r}: {len(self.image_ids)} images, {len(self.texts)} texts, {origin})"

    def image(self, image_id: int) -> Image.Image:
        """The gallery image ``image_id``, decoded, in RGB. A ``DataError`` names the file and line
        (or LMDB key) of an image that is not valid base64 or not a readable image."""
        return self.images([image_id])[0]

    def images(self, ids: Sequence[int]) -> list[Image.Image]:
        """The gallery images ``ids``, decoded, in RGB, in the order asked for.

        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> pictures = {3: Image.new("RGB", (4, 2), "white"), 4: Image.new("L", (2, 2))}
        >>> _ = write_split(folder / "datasets" / "toy", "valid", pictures, [(1, "白", [3])])
        >>> [(image.mode, image.size) for image in open_split(folder, "toy", "valid").images([4, 3])]
        [('RGB', (2, 2)), ('RGB', (4, 2))]
        """
        if self._store is None:
            raise ValueError(f"{self!r} was made without an image store; open it with open_split")
        return self._store.read(list(ids))

    def text_to_images(self) -> dict[int, list[int]]:
        """Each text's ground-truth images: ``{text_id: image_ids}``, in file order."""
        return {text_id: list(image_ids) for text_id, _, image_ids in self.texts}

    def image_to_texts(self) -> dict[int, list[int]]:
        """Each image's texts, derived from the text annotations as cn-clip's
        ``transform_ir_annotation_to_tr.py`` does: only images that some text names, in the order
        they are first named, each with its text ids in file order.

        >>> split = RetrievalSet("x", [1, 2, 3], [(10, "a", [2, 1]), (11, "b", [2])])
        >>> split.image_to_texts()
        {2: [10, 11], 1: [10]}
        """
        texts_of: dict[int, list[int]] = {}
        for text_id, _, image_ids in self.texts:
            for image_id in image_ids:
                texts_of.setdefault(image_id, []).append(text_id)
        return texts_of


def open_split(datapath: str | Path, dataset: str, split: str, *, source: Source = "auto") -> RetrievalSet:
    """The split ``split`` of ``<datapath>/datasets/<dataset>/``, checked whole.

    ``source``: ``"tsv"`` reads ``{split}_imgs.tsv`` and ``{split}_texts.jsonl``; ``"lmdb"`` reads
    ``lmdb/{split}/imgs`` and the texts from ``{split}_texts.jsonl``, or from ``lmdb/{split}/pairs``
    when there is no jsonl; ``"auto"`` is ``"lmdb"`` when ``lmdb/{split}`` exists, else ``"tsv"``.
    Bad input raises ``DataError`` naming the file and line (or LMDB key) and the fix.

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_split(folder / "datasets" / "toy", "valid", {1: Image.new("RGB", (4, 4))}, [(5, "x", [9])])
    >>> open_split(folder, "toy", "valid")
    Traceback (most recent call last):
    ...
    esq.errors.DataError: .../valid_texts.jsonl, line 1: text 5 names image 9, which is not in .../valid_imgs.tsv; ...
    """
    if source not in ("auto", "tsv", "lmdb"):
        raise ConfigError(f"data source must be 'auto', 'tsv' or 'lmdb', got {source!r}")
    _check_split_name(split)
    dataset_dir = _dataset_dir(Path(datapath), dataset)
    lmdb_split = dataset_dir / "lmdb" / split
    tsv, jsonl = dataset_dir / f"{split}_imgs.tsv", dataset_dir / f"{split}_texts.jsonl"
    name = f"{dataset}/{split}"
    if source == "lmdb" or (source == "auto" and lmdb_split.is_dir()):
        if not lmdb_split.is_dir():
            raise DataError(
                f"{lmdb_split}: no such LMDB folder (expected lmdb/{split}/imgs and lmdb/{split}/pairs); build it "
                f"with `esq clip build-lmdb --datapath {datapath} --dataset {dataset} --splits {split}`"
            )
        store = _LmdbImages.open(lmdb_split / "imgs")
        gallery = set(store.image_ids)
        if jsonl.is_file():
            texts = _read_texts(jsonl, gallery, store.path)
        else:
            texts = _read_pairs(lmdb_split / "pairs", gallery, store.path, jsonl)
        return RetrievalSet(name, list(store.image_ids), texts, store)
    if not tsv.is_file():
        raise DataError(
            f"{tsv}: no such file (expected {_TSV_FORMAT}, or the LMDB folder {lmdb_split}); "
            f"put the split's images there in Chinese-CLIP's format"
        )
    _require_file(jsonl, _JSONL_FORMAT)
    store = _TsvImages.index(tsv)
    texts = _read_texts(jsonl, set(store.image_ids), tsv)
    return RetrievalSet(name, list(store.image_ids), texts, store)


def build_lmdb(dataset_dir: Path, splits: Sequence[str], lmdb_dir: Path | None = None) -> dict[str, tuple[int, int]]:
    """Convert each split's ``{split}_imgs.tsv`` and ``{split}_texts.jsonl`` in ``dataset_dir`` to
    ``<lmdb_dir>/{split}/imgs`` and ``pairs`` (``lmdb_dir`` defaults to ``dataset_dir/lmdb``), with
    the keys and values cn-clip's ``build_lmdb_dataset.py`` writes; returns ``{split: (images,
    pairs)}``.

    Every split is checked first, as ``open_split`` checks it, and each image's base64 as well;
    then each split is written to a temporary folder next to its target and renamed into place,
    replacing an older one. A failure leaves no LMDB folder, whole or half-written.

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_split(folder, "valid", {1: Image.new("RGB", (4, 4))}, [(5, "x", [1]), (6, "y", [1])])
    >>> build_lmdb(folder, ["valid"], folder / "elsewhere")
    {'valid': (1, 2)}
    >>> sorted(path.name for path in (folder / "elsewhere" / "valid").iterdir())
    ['imgs', 'pairs']
    """
    import lmdb

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DataError(f"{dataset_dir}: no such dataset folder; expected the split files {{split}}_imgs.tsv there")
    wanted = list(dict.fromkeys(splits))
    if not wanted:
        raise ConfigError("no splits to build; name at least one, e.g. valid,test")
    for split in wanted:
        _check_split_name(split)
    checked = {}
    for split in wanted:
        tsv, jsonl = dataset_dir / f"{split}_imgs.tsv", dataset_dir / f"{split}_texts.jsonl"
        _require_file(tsv, _TSV_FORMAT)
        _require_file(jsonl, _JSONL_FORMAT)
        store = _TsvImages.index(tsv, check_base64=True)
        checked[split] = (store, _read_texts(jsonl, set(store.image_ids), tsv))

    lmdb_dir = Path(lmdb_dir) if lmdb_dir is not None else dataset_dir / "lmdb"
    created = not lmdb_dir.exists()
    lmdb_dir.mkdir(parents=True, exist_ok=True)
    temporaries: dict[str, Path] = {}
    counts = {}
    try:
        for split, (store, texts) in checked.items():
            temporary = _new_folder(lmdb_dir, f".{split}", "tmp")
            temporaries[split] = temporary
            pairs = (
                (str(index).encode(), pickle.dumps(pair))
                for index, pair in enumerate(
                    (image_id, text_id, text) for text_id, text, image_ids in texts for image_id in image_ids
                )
            )
            pair_count = sum(len(image_ids) for _, _, image_ids in texts)
            _write_lmdb(lmdb, temporary / "pairs", pairs, b"num_samples", pair_count)
            _write_lmdb(lmdb, temporary / "imgs", store.encoded(), b"num_images", len(store.image_ids))
            counts[split] = (len(store.image_ids), pair_count)
        for split, temporary in temporaries.items():
            _replace_folder(temporary, lmdb_dir / split)
    except BaseException:
        for temporary in temporaries.values():
            shutil.rmtree(temporary, ignore_errors=True)
        if created and not any(lmdb_dir.iterdir()):
            lmdb_dir.rmdir()
        raise
    return counts


def write_split(
    dataset_dir: Path,
    split: str,
    images: Mapping[int, Image.Image | bytes],
    texts: Iterable[tuple[int, str, Sequence[int]]],
) -> tuple[Path, Path]:
    """Write ``{split}_imgs.tsv`` and ``{split}_texts.jsonl`` in Chinese-CLIP's format: images given
    as PIL images are stored as PNG, bytes as they are (an encoded image file), both in standard
    base64 as Chinese-CLIP's data preparation does. Nothing is checked here; ``open_split`` checks
    what it reads.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _, texts = write_split(folder, "test", {4: b"not an image"}, [(1, "文本", [4])])
    >>> (folder / "test_imgs.tsv").read_text()
    '4\\tbm90IGFuIGltYWdl\\n'
    >>> texts.read_text(encoding="utf-8")
    '{"text_id": 1, "text": "文本", "image_ids": [4]}\\n'
    """
    dataset_dir = Path(dataset_dir)
    tsv, jsonl = dataset_dir / f"{split}_imgs.tsv", dataset_dir / f"{split}_texts.jsonl"
    with open_atomic(tsv) as handle:
        for image_id, image in images.items():
            if not isinstance(image, bytes):
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                image = buffer.getvalue()
            handle.write(f"{image_id}\t{base64.b64encode(image).decode('ascii')}\n")
    with open_atomic(jsonl) as handle:
        for text_id, text, image_ids in texts:
            record = {"text_id": text_id, "text": text, "image_ids": list(image_ids)}
            handle.write(f"{json.dumps(record, ensure_ascii=False)}\n")
    return tsv, jsonl


# --- image stores ------------------------------------------------------------------------------


class _TsvImages:
    """Where each image's base64 lies in a TSV file (byte offset and length); nothing else is kept."""

    kind = "TSV"

    def __init__(self, path: Path, image_ids: list[int], offsets: array, lengths: array) -> None:
        self.path = path
        self.image_ids = image_ids
        self._offsets = offsets
        self._lengths = lengths
        self._row = {image_id: row for row, image_id in enumerate(image_ids)}

    @classmethod
    def index(cls, path: Path, *, check_base64: bool = False) -> _TsvImages:
        """One pass over ``path``: checks each line's form and id, and notes where its base64 is."""
        image_ids: list[int] = []
        offsets, lengths = array("q"), array("q")
        line_of: dict[int, int] = {}
        offset = 0
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                where = f"{path}, line {number}"
                content = line.rstrip(b"\r\n")
                if not content.strip():
                    raise DataError(f"{where}: empty line; remove it (the file holds {_TSV_FORMAT})")
                tabs = content.count(b"\t")
                if tabs != 1:
                    raise DataError(
                        f"{where}: expected image_id<TAB>base64 (one TAB), found {tabs} TABs; "
                        "write one image per line with a single TAB after its id"
                    )
                raw_id, padded = content.split(b"\t")
                encoded = padded.strip()  # spaces around the base64 are dropped, as cn-clip's builder does
                if not _INTEGER.fullmatch(raw_id):
                    raise DataError(
                        f"{where}: image id {_shown(raw_id.decode(errors='replace'))} is not an integer; "
                        "write the id as a plain decimal integer (no plus sign, spaces or leading zeros)"
                    )
                image_id = int(raw_id)
                if image_id in line_of:
                    raise DataError(
                        f"{where}: image id {image_id} again (first on line {line_of[image_id]}); "
                        "give each image its own id"
                    )
                if not encoded:
                    raise DataError(f"{where}: image {image_id} has no base64 after the TAB; add the encoded image")
                if check_base64:
                    _decode_base64(encoded, f"{where}: image {image_id}")
                line_of[image_id] = number
                image_ids.append(image_id)
                offsets.append(offset + len(raw_id) + 1 + len(padded) - len(padded.lstrip()))
                lengths.append(len(encoded))
                offset += len(line)
        if not image_ids:
            raise DataError(f"{path}: no images; the file should hold {_TSV_FORMAT}")
        return cls(path, image_ids, offsets, lengths)

    def read(self, ids: list[int]) -> list[Image.Image]:
        rows = [self._row_of(image_id) for image_id in ids]
        with open(self.path, "rb") as handle:
            encoded = []
            for row in rows:
                handle.seek(self._offsets[row])
                encoded.append(handle.read(self._lengths[row]))
        return [
            _decode_image(data, f"{self.path}, line {row + 1}: image {self.image_ids[row]}")
            for row, data in zip(rows, encoded, strict=True)
        ]

    def encoded(self) -> Iterator[tuple[bytes, bytes]]:
        """``(str(image_id) as UTF-8, base64 bytes)`` in file order, read one line at a time."""
        with open(self.path, "rb") as handle:
            for row, image_id in enumerate(self.image_ids):
                handle.seek(self._offsets[row])
                yield str(image_id).encode(), handle.read(self._lengths[row])

    def _row_of(self, image_id: int) -> int:
        try:
            return self._row[image_id]
        except KeyError:
            raise KeyError(f"no image {image_id!r} in {self.path}") from None


class _LmdbImages:
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
    def open(cls, path: Path) -> _LmdbImages:
        """Checks the keys (each an integer id, and ``num_images`` matching their count); reads no
        image."""
        environment = _open_lmdb(path, "imgs")
        try:
            with environment.begin() as transaction:
                count = _count(transaction, path, b"num_images")
                image_ids = []
                for key in transaction.cursor().iternext(keys=True, values=False):
                    if key == b"num_images":
                        continue
                    if not _INTEGER.fullmatch(key):
                        raise DataError(
                            f"{path}: key {_shown(key.decode(errors='replace'))} is not an integer image id; "
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
                raise KeyError(f"no image {image_id!r} in {self.path}")
        if self._environment is None or self._pid != os.getpid():
            self._environment = _open_lmdb(self.path, "imgs")
            self._pid = os.getpid()
        with self._environment.begin() as transaction:
            encoded = [transaction.get(str(image_id).encode()) for image_id in ids]
        return [
            _decode_image(data, f"{self.path}, key '{image_id}': image {image_id}")
            for image_id, data in zip(ids, encoded, strict=True)
        ]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_environment": None, "_pid": -1}


# --- reading texts -----------------------------------------------------------------------------


def _read_texts(path: Path, gallery: set[int], gallery_path: Path) -> list[tuple[int, str, list[int]]]:
    texts: list[tuple[int, str, list[int]]] = []
    line_of: dict[int, int] = {}
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            where = f"{path}, line {number}"
            if not line.strip():
                raise DataError(f"{where}: empty line; remove it (the file holds {_JSONL_FORMAT})")
            try:
                record = json.loads(line)
            except ValueError as error:
                raise DataError(f"{where}: not valid JSON ({error}); write one JSON object per line") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, found {type(record).__name__}; {_JSONL_FORMAT}")
            missing = [key for key in ("text_id", "text", "image_ids") if key not in record]
            if missing:
                raise DataError(f"{where}: missing {', '.join(missing)}; each line needs text_id, text and image_ids")
            text_id, text, image_ids = record["text_id"], record["text"], record["image_ids"]
            if not _is_integer(text_id):
                raise DataError(f"{where}: text_id {text_id!r} is not an integer; give each text an integer id")
            if text_id in line_of:
                raise DataError(
                    f"{where}: text_id {text_id} again (first on line {line_of[text_id]}); give each text its own id"
                )
            if not isinstance(text, str):
                raise DataError(f"{where}: text of text {text_id} is {text!r}, not a string; write the text in quotes")
            if not isinstance(image_ids, list) or not all(_is_integer(item) for item in image_ids):
                raise DataError(
                    f"{where}: image_ids of text {text_id} is {image_ids!r}, not a list of integers; "
                    "list the ids of the images the text describes"
                )
            if not image_ids:
                raise DataError(
                    f"{where}: text {text_id} has no image_ids; list at least one image it describes, or remove it"
                )
            for image_id in image_ids:
                if image_id not in gallery:
                    raise DataError(
                        f"{where}: text {text_id} names image {image_id}, which is not in {gallery_path}; "
                        "add the image there or remove the id from image_ids"
                    )
            if len(set(image_ids)) != len(image_ids):
                raise DataError(f"{where}: text {text_id} names an image twice in {image_ids}; list each image once")
            line_of[text_id] = number
            texts.append((text_id, text, image_ids))
    if not texts:
        raise DataError(f"{path}: no texts; the file should hold {_JSONL_FORMAT}")
    return texts


def _read_pairs(path: Path, gallery: set[int], gallery_path: Path, jsonl: Path) -> list[tuple[int, str, list[int]]]:
    """The texts, rebuilt from a ``pairs`` LMDB: pairs grouped by text id, in first-seen order."""
    if not path.is_dir():
        raise DataError(
            f"{path}: no such LMDB folder, and no {jsonl} either; the texts must be in one of them "
            "(rebuild the LMDB with `esq clip build-lmdb`, or put the jsonl back)"
        )
    texts: dict[int, tuple[int, str, list[int]]] = {}
    environment = _open_lmdb(path, "pairs")
    try:
        with environment.begin() as transaction:
            count = _count(transaction, path, b"num_samples")
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
        and _is_integer(value[0])
        and _is_integer(value[1])
        and isinstance(value[2], str)
    ):
        raise DataError(f"{where}: expected (image_id, text_id, text), found {_shown(value)}; {fix}")
    return value


# --- helpers -----------------------------------------------------------------------------------


def _decode_base64(encoded: bytes, what: str) -> bytes:
    """Standard or URL-safe base64 (cn-clip reads with ``urlsafe_b64decode``, which takes both),
    strictly: a character outside the alphabet or wrong padding is an error, not skipped."""
    try:
        return base64.b64decode(encoded.translate(_URLSAFE_TO_STANDARD), validate=True)
    except (binascii.Error, ValueError) as error:
        raise DataError(f"{what} is not valid base64 ({error}); encode the image file with base64.b64encode") from None


def _decode_image(encoded: bytes | None, what: str) -> Image.Image:
    from PIL import Image

    if encoded is None:
        raise DataError(f"{what} is missing; rebuild the LMDB with `esq clip build-lmdb`")
    data = _decode_base64(encoded, what)
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"{what} does not decode as an image ({error}); store an encoded image file (JPEG, PNG, ...)"
        ) from None


def _write_lmdb(lmdb: Any, path: Path, items: Iterable[tuple[bytes, bytes]], count_key: bytes, count: int) -> None:
    """A new LMDB at ``path``: ``items`` in batches, then ``count_key`` → the decimal count. The
    map grows when it fills, so its first size need not be right."""
    environment = lmdb.open(str(path), map_size=_FIRST_MAP_SIZE)
    try:
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        for key, value in items:
            batch.append((key, value))
            size += len(key) + len(value)
            if len(batch) >= _BATCH_ENTRIES or size >= _BATCH_BYTES:
                _put(lmdb, environment, batch)
                batch, size = [], 0
        batch.append((count_key, str(count).encode()))
        _put(lmdb, environment, batch)
        environment.sync(True)
    finally:
        environment.close()


def _put(lmdb: Any, environment: Any, batch: list[tuple[bytes, bytes]]) -> None:
    while True:
        try:
            with environment.begin(write=True) as transaction:
                for key, value in batch:
                    transaction.put(key, value)
            return
        except lmdb.MapFullError:
            environment.set_mapsize(2 * environment.info()["map_size"])


def _replace_folder(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; an existing ``target`` is moved aside first and deleted after."""
    if not target.exists():
        os.replace(new, target)
        return
    old = _new_folder(target.parent, f".{target.name}", "old")
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _new_folder(parent: Path, prefix: str, suffix: str) -> Path:
    """A new, empty folder in ``parent`` with the usual permissions (``mkdtemp`` makes it private)."""
    while True:
        folder = parent / f"{prefix}.{uuid.uuid4().hex[:12]}.{suffix}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def _open_lmdb(path: Path, part: str) -> Any:
    import lmdb

    if not path.is_dir():
        raise DataError(
            f"{path}: no such LMDB folder (expected the split's '{part}' LMDB there); "
            "build it with `esq clip build-lmdb`"
        )
    try:
        return lmdb.open(str(path), readonly=True, create=False, lock=False, readahead=False, meminit=False)
    except lmdb.Error as error:
        raise DataError(f"{path}: not a readable LMDB ({error}); rebuild it with `esq clip build-lmdb`") from None


def _count(transaction: Any, path: Path, key: bytes) -> int:
    value = transaction.get(key)
    if value is None or not _INTEGER.fullmatch(value):
        found = "missing" if value is None else f"{_shown(value.decode(errors='replace'))}, not a count"
        raise DataError(f"{path}: key {key.decode()} is {found}; rebuild the LMDB with `esq clip build-lmdb`")
    return int(value)


def _dataset_dir(datapath: Path, dataset: str) -> Path:
    if not isinstance(dataset, str) or not dataset or "/" in dataset or "\\" in dataset or dataset in (".", ".."):
        raise ConfigError(f"dataset must be a folder name under <datapath>/datasets, got {dataset!r}")
    if not datapath.is_dir():
        raise DataError(f"{datapath}: no such datapath folder; expected it to hold datasets/<name>/")
    folder = datapath / "datasets" / dataset
    if not folder.is_dir():
        found = sorted(path.name for path in (datapath / "datasets").glob("*") if path.is_dir())
        listed = f"found: {', '.join(found)}" if found else "found none"
        raise DataError(f"{folder}: no such dataset folder ({listed}); check --dataset and --datapath")
    return folder


def _check_split_name(split: str) -> None:
    if not isinstance(split, str) or not split or "/" in split or "\\" in split or split.startswith("."):
        raise ConfigError(f"split must be a name such as valid or test, got {split!r}")


def _require_file(path: Path, holds: str) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected {holds}); put the split's data there")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."
