"""Chinese-CLIP retrieval data: a split's gallery images and text queries, from TSV + jsonl or LMDB.

The layout under ``<datapath>/datasets/<name>/`` is Chinese-CLIP's:

- ``{split}_imgs.tsv``: one line per image, ``image_id<TAB>base64 of the encoded image`` (the
  standard or the URL-safe alphabet, with padding; cn-clip decodes with ``urlsafe_b64decode``),
  see :mod:`esq_clip.tsv_images`;
- ``{split}_texts.jsonl``: one line per text, ``{"text_id": int, "text": str, "image_ids": [int, ...]}``,
  see :mod:`esq_clip.jsonl_texts`;
- ``lmdb/{split}/imgs`` and ``lmdb/{split}/pairs``: the LMDB form cn-clip's
  ``preprocess/build_lmdb_dataset.py`` writes, see :mod:`esq_clip.lmdb_read`; ``build_lmdb``
  (:mod:`esq_clip.lmdb_build`, ``esq clip build-lmdb``) converts TSV + jsonl to it.

``open_split`` reads either form and checks it whole when it opens; images stay on disk (TSV byte
offsets or LMDB keys) and are decoded when asked for. Reading an LMDB split, the gallery is in the
LMDB's key order, the order in which cn-clip's evaluation reads it, so feature files line up with
the official ones. The texts come from ``{split}_texts.jsonl`` when it is there, as the official
evaluation reads them, and otherwise are rebuilt from the ``pairs`` LMDB. ``locate_split`` finds
the files without reading them (what a pipeline checks before it runs).

Blank lines: the newline that ends the last line is normal; any empty line (one in the middle, or
an extra empty line at the end) is an error that gives its line number.

>>> import base64, io, pathlib, tempfile
>>> from PIL import Image
>>> from esq_clip.lmdb_build import build_lmdb
>>> datapath = pathlib.Path(tempfile.mkdtemp())
>>> folder = datapath / "datasets" / "toy"
>>> folder.mkdir(parents=True)
>>> def png(colour):
...     buffer = io.BytesIO()
...     Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
...     return base64.b64encode(buffer.getvalue()).decode()
>>> _ = (folder / "valid_imgs.tsv").write_text(f"1\\t{png('red')}\\n2\\t{png('blue')}\\n")
>>> texts = ['{"text_id": 10, "text": "红色", "image_ids": [1]}', '{"text_id": 11, "text": "b", "image_ids": [2]}']
>>> _ = (folder / "valid_texts.jsonl").write_text("\\n".join(texts) + "\\n", encoding="utf-8")
>>> split = open_split(datapath, "toy", "valid")
>>> split
RetrievalSet('toy/valid': 2 images, 2 texts, from TSV)
>>> split.image(2).getpixel((0, 0))
(0, 0, 255)
>>> build_lmdb(folder, ["valid"])
{'valid': (2, 2)}
>>> open_split(datapath, "toy", "valid").texts == split.texts
True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from esq import ConfigError, DataError
from esq_clip.jsonl_texts import JSONL_FORMAT, read_texts
from esq_clip.lmdb_read import LmdbImages, open_lmdb, read_pairs
from esq_clip.lmdb_swap import clean_leftovers, old_copy
from esq_clip.tsv_images import TSV_FORMAT, TsvImages

if TYPE_CHECKING:
    from PIL import Image

Source = Literal["auto", "tsv", "lmdb"]


@dataclass(frozen=True, repr=False)
class RetrievalSet:
    """A split's gallery images and text queries.

    ``image_ids`` are in file order (LMDB: key order); ``texts`` are ``(text_id, text, image_ids)``
    in file order. Images are read from disk and decoded when asked for.

    >>> split = RetrievalSet("toy/test", [7, 8], [(1, "黑", [7]), (2, "白", [8, 7])])
    >>> split.image_ids, split.text_to_images(), split.image_to_texts()
    ([7, 8], {1: [7], 2: [8, 7]}, {7: [1, 2], 8: [2]})
    """

    name: str
    image_ids: list[int]
    texts: list[tuple[int, str, list[int]]]
    _store: TsvImages | LmdbImages | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        origin = f"from {self._store.kind}" if self._store is not None else "no images on disk"
        return f"RetrievalSet({self.name!r}: {len(self.image_ids)} images, {len(self.texts)} texts, {origin})"

    def image(self, image_id: int) -> Image.Image:
        """The gallery image ``image_id``, decoded, in RGB. A ``DataError`` names the file and line
        (or LMDB key) of an image that is not valid base64 or not a readable image."""
        return self.images([image_id])[0]

    def images(self, ids: Sequence[int]) -> list[Image.Image]:
        """The gallery images ``ids``, decoded, in RGB, in the order asked for.

        >>> import base64, io, pathlib, tempfile
        >>> from PIL import Image
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / "datasets" / "toy"
        >>> folder.mkdir(parents=True)
        >>> def png(image):
        ...     buffer = io.BytesIO()
        ...     image.save(buffer, format="PNG")
        ...     return base64.b64encode(buffer.getvalue()).decode()
        >>> lines = f"3\\t{png(Image.new('RGB', (4, 2)))}\\n4\\t{png(Image.new('L', (2, 2)))}\\n"
        >>> _ = (folder / "valid_imgs.tsv").write_text(lines)
        >>> _ = (folder / "valid_texts.jsonl").write_text('{"text_id": 1, "text": "x", "image_ids": [3]}\\n')
        >>> [(image.mode, image.size) for image in open_split(folder.parent.parent, "toy", "valid").images([4, 3])]
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


@dataclass(frozen=True)
class SplitFiles:
    """Where a split's files are: ``images`` (the TSV, or the ``imgs`` LMDB), ``texts`` (the
    jsonl; with LMDB it may be absent, then the texts are in ``pairs``)."""

    name: str
    source: Literal["tsv", "lmdb"]
    images: Path
    texts: Path
    pairs: Path | None = None


def locate_split(datapath: str | Path, dataset: str, split: str, *, source: Source = "auto") -> SplitFiles:
    """The files of split ``split`` of ``<datapath>/datasets/<dataset>/`` (see :func:`open_split`
    for ``source``), each checked to be there, and an LMDB's size against its pages; no record is
    read. Leftovers of a killed ``esq clip build-lmdb`` are cleaned first. A missing folder or file raises
    ``DataError`` naming it and the fix, a bad name ``ConfigError``.

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "datasets" / "toy").mkdir(parents=True)
    >>> locate_split(folder, "toy", "valid")
    Traceback (most recent call last):
    ...
    esq.errors.DataError: .../valid_imgs.tsv: no such file (expected lines image_id<TAB>base64 ...); ...
    """
    if source not in ("auto", "tsv", "lmdb"):
        raise ConfigError(f"data source must be 'auto', 'tsv' or 'lmdb', got {source!r}")
    check_split_name(split)
    dataset_dir = dataset_folder(Path(datapath), dataset)
    lmdb_dir = dataset_dir / "lmdb"
    lmdb_split = lmdb_dir / split
    tsv, jsonl = dataset_dir / f"{split}_imgs.tsv", dataset_dir / f"{split}_texts.jsonl"
    name = f"{dataset}/{split}"
    build = f"`esq clip build-lmdb --datapath {datapath} --dataset {dataset} --splits {split}`"
    if source != "tsv":
        clean_leftovers(lmdb_dir)
        aside = old_copy(lmdb_dir, split)
        if aside is not None and not os.path.lexists(lmdb_split):
            raise DataError(
                f"{lmdb_split}: missing while {aside} holds its old copy (a build is running, or was killed); "
                f"wait for the build to finish, or run {build} again"
            )
    if source == "lmdb" or (source == "auto" and os.path.lexists(lmdb_split)):
        if not lmdb_split.is_dir():
            found = "no such LMDB folder" if not os.path.lexists(lmdb_split) else "not a folder"
            raise DataError(
                f"{lmdb_split}: {found} (expected lmdb/{split}/imgs and lmdb/{split}/pairs); "
                f"build it with {build}" + (", or pass --data-source tsv" if source == "auto" else "")
            )
        open_lmdb(lmdb_split / "imgs", "imgs").close()
        pairs = lmdb_split / "pairs"
        if not jsonl.is_file() and not pairs.is_dir():
            raise DataError(
                f"{pairs}: no such LMDB folder, and no {jsonl} either; the texts must be in one of them "
                "(rebuild the LMDB with `esq clip build-lmdb`, or put the jsonl back)"
            )
        if not jsonl.is_file():
            open_lmdb(pairs, "pairs").close()
        return SplitFiles(name, "lmdb", lmdb_split / "imgs", jsonl, pairs)
    if not tsv.is_file():
        raise DataError(
            f"{tsv}: no such file (expected {TSV_FORMAT}, or the LMDB folder {lmdb_split}); "
            f"put the split's images there in Chinese-CLIP's format"
        )
    require_file(jsonl, JSONL_FORMAT)
    return SplitFiles(name, "tsv", tsv, jsonl)


def open_split(datapath: str | Path, dataset: str, split: str, *, source: Source = "auto") -> RetrievalSet:
    """The split ``split`` of ``<datapath>/datasets/<dataset>/``, checked whole.

    ``source``: ``"tsv"`` reads ``{split}_imgs.tsv`` and ``{split}_texts.jsonl``; ``"lmdb"`` reads
    ``lmdb/{split}/imgs`` and the texts from ``{split}_texts.jsonl``, or from ``lmdb/{split}/pairs``
    when there is no jsonl; ``"auto"`` is ``"lmdb"`` when ``lmdb/{split}`` exists, else ``"tsv"``
    (an ``lmdb/{split}`` that is broken, or missing while a build has its old copy aside, is an
    error, not a reason to read the TSV).
    Bad input raises ``DataError`` naming the file and line (or LMDB key) and the fix.

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> toy = folder / "datasets" / "toy"
    >>> toy.mkdir(parents=True)
    >>> _ = (toy / "valid_imgs.tsv").write_text("1\\tYQ==\\n")
    >>> _ = (toy / "valid_texts.jsonl").write_text('{"text_id": 5, "text": "x", "image_ids": [9]}')
    >>> open_split(folder, "toy", "valid")
    Traceback (most recent call last):
    ...
    esq.errors.DataError: .../valid_texts.jsonl, line 1: text 5 names image 9, which is not in .../valid_imgs.tsv; ...
    """
    files = locate_split(datapath, dataset, split, source=source)
    if files.source == "lmdb":
        store = LmdbImages.open(files.images)
        gallery = set(store.image_ids)
        if files.texts.is_file():
            texts = read_texts(files.texts, gallery, store.path)
        else:
            texts = read_pairs(files.pairs, gallery, store.path)
        return RetrievalSet(files.name, list(store.image_ids), texts, store)
    store = TsvImages.index(files.images)
    texts = read_texts(files.texts, set(store.image_ids), files.images)
    return RetrievalSet(files.name, list(store.image_ids), texts, store)


def check_dataset_name(dataset: str) -> str:
    """``dataset`` if it names one folder under ``<datapath>/datasets``, else a ``ConfigError``
    (a path such as ``../x`` would read or write outside it).

    >>> check_dataset_name("MUGE")
    'MUGE'
    >>> check_dataset_name("../x")
    Traceback (most recent call last):
    ...
    esq.errors.ConfigError: dataset must be a folder name under <datapath>/datasets, got '../x'
    """
    if (
        not isinstance(dataset, str)
        or not dataset
        or "/" in dataset
        or "\\" in dataset
        or "\0" in dataset
        or dataset in (".", "..")
    ):
        raise ConfigError(f"dataset must be a folder name under <datapath>/datasets, got {dataset!r}")
    return dataset


def dataset_folder(datapath: Path, dataset: str) -> Path:
    """``<datapath>/datasets/<dataset>``, the name checked (:func:`check_dataset_name`) and the
    folder there; else an error naming what is missing."""
    check_dataset_name(dataset)
    datapath = Path(datapath)
    if not datapath.is_dir():
        raise DataError(f"{datapath}: no such datapath folder; expected it to hold datasets/<name>/")
    folder = datapath / "datasets" / dataset
    if not folder.is_dir():
        found = sorted(path.name for path in (datapath / "datasets").glob("*") if path.is_dir())
        listed = f"found: {', '.join(found)}" if found else "found none"
        raise DataError(f"{folder}: no such dataset folder ({listed}); check --dataset and --datapath")
    return folder


def check_split_name(split: str) -> None:
    if not isinstance(split, str) or not split or "/" in split or "\\" in split or split.startswith("."):
        raise ConfigError(f"split must be a name such as valid or test, got {split!r}")


def require_file(path: Path, holds: str) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected {holds}); put the split's data there")
