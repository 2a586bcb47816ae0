"""``build_lmdb`` (``esq clip build-lmdb``): a split's TSV + jsonl converted to the LMDB form,
with the keys and values cn-clip's ``build_lmdb_dataset.py`` writes, checked first and written
whole or not at all."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from esq import ConfigError, DataError
from esq_clip.jsonl_texts import JSONL_FORMAT, read_texts
from esq_clip.lmdb_swap import build_lock, clean_leftovers, install_folder, new_folder
from esq_clip.splits import check_split_name, require_file
from esq_clip.tsv_images import TSV_FORMAT, TsvImages

BATCH_BYTES = 64 * 2**20  # an LMDB write transaction holds at most about this much
BATCH_ENTRIES = 1000
FIRST_MAP_SIZE = 64 * 2**20  # bytes; the map doubles whenever it fills


def build_lmdb(dataset_dir: Path, splits: Sequence[str], lmdb_dir: Path | None = None) -> dict[str, tuple[int, int]]:
    """Convert each split's ``{split}_imgs.tsv`` and ``{split}_texts.jsonl`` in ``dataset_dir`` to
    ``<lmdb_dir>/{split}/imgs`` and ``pairs`` (``lmdb_dir`` defaults to ``dataset_dir/lmdb``), with
    the keys and values cn-clip's ``build_lmdb_dataset.py`` writes; returns ``{split: (images,
    pairs)}``.

    Every split is checked first, as ``open_split`` checks it, and each image's base64 as well;
    then each split is written to a temporary folder next to its target and swapped into place
    (:func:`esq_clip.lmdb_swap.install_folder`): killed at any point, ``<lmdb_dir>/<split>`` is the
    old database or the new one, and the next build or read cleans what is left. A failure leaves
    no half-written folder; two builds into one folder at once are refused.

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "valid_imgs.tsv").write_text("1\\tYQ==\\n")
    >>> lines = ['{"text_id": 5, "text": "x", "image_ids": [1]}', '{"text_id": 6, "text": "y", "image_ids": [1]}']
    >>> _ = (folder / "valid_texts.jsonl").write_text("\\n".join(lines) + "\\n")
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
        check_split_name(split)
    checked = {}
    for split in wanted:
        tsv, jsonl = dataset_dir / f"{split}_imgs.tsv", dataset_dir / f"{split}_texts.jsonl"
        require_file(tsv, TSV_FORMAT)
        require_file(jsonl, JSONL_FORMAT)
        store = TsvImages.index(tsv, check_base64=True)
        checked[split] = (store, read_texts(jsonl, set(store.image_ids), tsv))

    lmdb_dir = Path(lmdb_dir) if lmdb_dir is not None else dataset_dir / "lmdb"
    created = not lmdb_dir.exists()
    lmdb_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(lmdb_dir) as locked:
        if not locked:
            raise DataError(f"{lmdb_dir}: another `esq clip build-lmdb` is writing here; wait for it to finish")
        clean_leftovers(lmdb_dir, locked=True)
        counts = _write_splits(lmdb, lmdb_dir, checked, created)
    return counts


def _write_splits(lmdb: Any, lmdb_dir: Path, checked: dict[str, Any], created: bool) -> dict[str, tuple[int, int]]:
    """Each split into a temporary folder, then each swapped in (:func:`install_folder`)."""
    temporaries: dict[str, Path] = {}
    counts = {}
    installed = False
    try:
        for split, (store, texts) in checked.items():
            temporary = new_folder(lmdb_dir, f".{split}", "tmp")
            temporaries[split] = temporary
            pairs = (
                (str(index).encode(), pickle.dumps(pair))
                for index, pair in enumerate(
                    (image_id, text_id, text) for text_id, text, image_ids in texts for image_id in image_ids
                )
            )
            pair_count = sum(len(image_ids) for _, _, image_ids in texts)
            write_lmdb(lmdb, temporary / "pairs", pairs, b"num_samples", pair_count)
            write_lmdb(lmdb, temporary / "imgs", store.encoded(), b"num_images", len(store.image_ids))
            counts[split] = (len(store.image_ids), pair_count)
        for split, temporary in temporaries.items():
            install_folder(temporary, lmdb_dir / split)
        installed = True
    finally:
        if not installed:  # a failure or an interruption: no half-written folder stays
            for temporary in temporaries.values():
                shutil.rmtree(temporary, ignore_errors=True)
            if created and not any(lmdb_dir.iterdir()):
                lmdb_dir.rmdir()
    return counts


def write_lmdb(lmdb: Any, path: Path, items: Iterable[tuple[bytes, bytes]], count_key: bytes, count: int) -> None:
    """A new LMDB at ``path``: ``items`` in batches, then ``count_key`` → the decimal count. The
    map grows when it fills, so its first size need not be right."""
    environment = lmdb.open(str(path), map_size=FIRST_MAP_SIZE)
    try:
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        for key, value in items:
            batch.append((key, value))
            size += len(key) + len(value)
            if len(batch) >= BATCH_ENTRIES or size >= BATCH_BYTES:
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
