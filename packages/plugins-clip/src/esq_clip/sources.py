"""Where a step of ``esq run retrieval`` finds its inputs, across separate commands.

Each run records, in ``<run>/<model>/sources.json``, the folders that hold that model's features
and predictions (its own folder for what it wrote, the folder it read for the rest) and what each
embedding's predictions cost (``bits_per_vector``, a quantizer's codebook statistics). A later
step given ``--features-dir <run>`` looks for its files in ``<run>/<model>/`` and, where they are
not there, follows ``sources.json`` to the run that has them: ``--step extract``, then
``--step knn --features-dir EXT``, then ``--step recall --features-dir KNN`` finds the features in
EXT and the predictions in KNN. Nothing is copied: only the new run's folder is written.

Without ``--features-dir`` the files are where Chinese-CLIP's own scripts leave them:
``<datapath>/datasets/<dataset>/{split}_imgs.img_feat.jsonl``, ``{split}_texts.txt_feat.jsonl``
(``extract_features.py``), ``{split}_predictions.jsonl`` and ``{split}_tr_predictions.jsonl``
(``make_topk_predictions.py``, ``make_topk_predictions_tr.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from esq import DataError, write_atomic

SOURCES_FILE = "sources.json"


def read_sources(folder: Path) -> dict[str, Any]:
    """The ``sources.json`` of a model's folder (``{}`` when there is none).

    >>> read_sources(Path("/nowhere"))
    {}
    """
    path = folder / SOURCES_FILE
    if not path.is_file():
        return {}
    try:
        sources = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not readable JSON ({error}); run the step that wrote this folder again") from None
    if not isinstance(sources, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(sources).__name__}; run that step again")
    return sources


def find_folder(start: Path, names: Sequence[str], kind: str) -> Path | None:
    """The folder holding every one of ``names``: ``start``, or the folder its ``sources.json``
    records for ``kind`` (``"features"`` or ``"predictions"``), followed run after run; ``None``
    when the chain ends without them.

    >>> find_folder(Path("/nowhere"), ["valid_predictions.jsonl"], "predictions") is None
    True
    """
    folder: Path | None = start
    seen: list[Path] = []
    while folder is not None and folder not in seen:
        if all((folder / name).is_file() for name in names):
            return folder
        seen.append(folder)
        recorded = read_sources(folder).get(kind)
        folder = Path(recorded) if isinstance(recorded, str) else None
    return None


def write_sources(folder: Path, features: Path | None, predictions: Path | None, embeddings: dict[str, Any]) -> Path:
    """Record where ``folder``'s model has its features and predictions, and each embedding's
    facts (``{"original": {"bits_per_vector": ...}, "vq": {...}}``)."""
    document: dict[str, Any] = {"embeddings": embeddings}
    if features is not None:
        document["features"] = str(features.resolve())
    if predictions is not None:
        document["predictions"] = str(predictions.resolve())
    return write_atomic(folder / SOURCES_FILE, json.dumps(document, indent=2))
