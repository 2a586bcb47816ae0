"""Chinese-CLIP's evaluation files and scores, written as the official scripts write them.

- features: ``{"image_id": id, "feature": [...]}`` / ``{"text_id": id, "feature": [...]}`` per
  line (``json.dumps`` of float32 values through ``tolist``, as ``extract_features.py``);
- predictions: ``{"text_id": id, "image_ids": [top k]}`` (``make_topk_predictions.py``) and
  ``{"image_id": id, "text_ids": [top k]}`` (``make_topk_predictions_tr.py``);
- the image→text gold: ``{"image_id": id, "text_ids": [...]}`` per image that some text names,
  in first-seen order (``transform_ir_annotation_to_tr.py``);
- scores: ``{"success": true, "score": ..., "scoreJson": {"score", "mean_recall", "r1", "r5",
  "r10"}}``, percentages, computed with the official scorer's arithmetic (``evaluation.py``).

Recall@k, as the official scorer: for each query of the gold file, a hit when any of its gold ids
is among its first k predictions; divided by the number of gold queries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from esq import open_atomic, write_atomic

KS = (1, 5, 10)
Progress = Callable[[Iterable[str]], Iterator[str]]
TOP_K = 10  # the official scorer requires exactly 10 predictions per query


def write_features(path: Path, id_key: str, ids: Sequence[int], features: Any) -> Path:
    with open_atomic(path) as handle:
        for item, feature in zip(ids, features.tolist(), strict=True):
            handle.write("{}\n".format(json.dumps({id_key: item, "feature": feature})))
    return path


def read_features(path: Path, id_key: str, progress: Progress | None = None) -> tuple[list[int], Any]:
    """Ids and a float32 (N, D) tensor from a features file; ``progress`` wraps its lines (a
    progress display: files of 100,000 lines take a while)."""
    import torch

    from esq import DataError

    if not path.is_file():
        raise DataError(f"{path}: no features file; run the extract step first (steps including 'extract')")
    ids, rows, seen = [], [], {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(progress(handle) if progress else handle, start=1):
            try:
                record = json.loads(line)
                item, feature = int(record[id_key]), record["feature"]
                if not isinstance(feature, list) or not all(
                    isinstance(value, (int, float)) and not isinstance(value, bool) for value in feature
                ):
                    raise TypeError("feature is not a list of numbers")
            except (ValueError, KeyError, TypeError) as error:
                raise DataError(f"{path}, line {number}: not a features line ({error}); extract again") from None
            if rows and len(feature) != len(rows[0]):
                raise DataError(
                    f"{path}, line {number}: a feature of {len(feature)} values, line 1 has {len(rows[0])}; "
                    "extract again"
                )
            if not all(math.isfinite(value) for value in feature):
                raise DataError(f"{path}, line {number}: the feature holds NaN or infinity; extract again")
            if item in seen:
                raise DataError(
                    f"{path}, line {number}: {id_key} {item} again (first on line {seen[item]}); extract again"
                )
            seen[item] = number
            ids.append(item)
            rows.append(feature)
    return ids, torch.tensor(rows, dtype=torch.float32)


def check_feature_ids(path: Path, kind: str, ids: Sequence[int], expected: Sequence[int], split: str) -> None:
    """The ids of a features file are those of the split: the same set, or a ``DataError``
    naming the file, the first id missing or foreign, and the fix."""
    from esq import DataError

    have, want = set(ids), set(expected)
    missing = [item for item in expected if item not in have]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(
            f"{path}: no feature for {kind} {missing[0]}{more} of {split}; extract the features of this split again"
        )
    foreign = [item for item in ids if item not in want]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise DataError(
            f"{path}: {kind} {foreign[0]}{more} is not in {split} (features of another split or dataset?); "
            "extract the features of this split again"
        )


def write_predictions(path: Path, query_key: str, answer_key: str, queries: Sequence[int], answers: Iterable) -> Path:
    with open_atomic(path) as handle:
        for query, top in zip(queries, answers, strict=True):
            handle.write(f"{json.dumps({query_key: query, answer_key: list(top)})}\n")
    return path


def image_to_text_gold(texts: Sequence[tuple[int, str, list[int]]]) -> dict[int, list[int]]:
    gold: dict[int, list[int]] = {}
    for text_id, _, image_ids in texts:
        for image_id in image_ids:
            gold.setdefault(image_id, []).append(text_id)
    return gold


def write_gold(path: Path, query_key: str, answer_key: str, gold: dict[int, list[int]]) -> Path:
    return write_predictions(path, query_key, answer_key, list(gold), gold.values())


def read_predictions(
    path: Path,
    query_key: str,
    answer_key: str,
    queries: Sequence[int],
    answers: Sequence[int],
    split: str,
    progress: Progress | None = None,
) -> dict[int, list[int]]:
    """The predictions of a file, ``{query: top 10}``, each line checked: its query one of
    ``queries`` and not seen before, 10 distinct answers, each one of ``answers`` (the ids of
    ``split``); else a ``DataError`` naming the file, the line and the id (predictions made from
    another dataset's or split's features name ids this split lacks)."""
    from esq import DataError

    if not path.is_file():
        raise DataError(f"{path}: no predictions; run the knn step first (steps including 'knn')")
    fix = "run the knn step again on this split's features"
    query_set, answer_set = set(queries), set(answers)
    query_kind, answer_kind = query_key.removesuffix("_id"), answer_key.removesuffix("_ids")
    predictions: dict[int, list[int]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(progress(handle) if progress else handle, start=1):
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
                query, top = int(record[query_key]), [int(item) for item in record[answer_key]]
            except (ValueError, KeyError, TypeError) as error:
                raise DataError(f"{where}: not a predictions line ({error}); {fix}") from None
            if query not in query_set:
                raise DataError(
                    f"{where}: {query_kind} {query} is not in {split} (predictions of another dataset?); {fix}"
                )
            if query in predictions:
                raise DataError(f"{where}: {query_key} {query} again; {fix}")
            if len(top) != TOP_K or len(set(top)) != TOP_K:
                raise DataError(
                    f"{where}: {len(set(top))} distinct {answer_key}, the official scorer needs {TOP_K}; {fix}"
                )
            foreign = [item for item in top if item not in answer_set]
            if foreign:
                raise DataError(
                    f"{where}: {answer_kind} {foreign[0]} is not in {split} (predictions of another dataset?); {fix}"
                )
            predictions[query] = top
    return predictions


def recalls(gold: dict[int, list[int]], predictions: dict[int, Sequence[int]]) -> tuple[float, float, float]:
    """R@1, R@5, R@10 as fractions, counted as the official scorer counts them; a gold query
    without predictions is a ``DataError`` naming it.

    >>> recalls({1: [7]}, {1: [8, 7, 9, 10, 11, 12, 13, 14, 15, 16]})
    (0.0, 1.0, 1.0)
    """
    from esq import DataError

    hits = dict.fromkeys(KS, 0)
    for query, answers in gold.items():
        if query not in predictions:
            raise DataError(f"no predictions for query {query} of the gold; predict every gold query (the knn step)")
        top = predictions[query]
        for k in KS:
            if any(answer in top[:k] for answer in answers):
                hits[k] += 1
    return tuple(hits[k] * 1.0 / len(gold) for k in KS)  # type: ignore[return-value]


def score_document(r1: float, r5: float, r10: float) -> dict[str, Any]:
    """The official scorer's result, with its arithmetic (percentages of the fractions)."""
    mean_recall = (r1 + r5 + r10) / 3.0
    return {
        "success": True,
        "score": mean_recall * 100,
        "scoreJson": {
            "score": mean_recall * 100,
            "mean_recall": mean_recall * 100,
            "r1": r1 * 100,
            "r5": r5 * 100,
            "r10": r10 * 100,
        },
    }


def write_scores(path: Path, document: dict[str, Any]) -> Path:
    return write_atomic(path, json.dumps(document))
