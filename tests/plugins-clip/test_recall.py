"""The official evaluation files and arithmetic: esq's against cn-clip's own scripts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from esq import DataError
from esq_clip.recall import (
    image_to_text_gold,
    read_predictions,
    recalls,
    score_document,
    write_gold,
    write_predictions,
    write_scores,
)

TEXTS = [(0, "猫", [5, 7]), (1, "狗", [7]), (2, "车", [9]), (3, "树", [5])]


def test_image_to_text_gold_is_byte_for_byte_the_official_transform(tmp_path):
    annotations = tmp_path / "valid_texts.jsonl"
    annotations.write_text(
        "".join(json.dumps({"text_id": t, "text": x, "image_ids": ids}) + "\n" for t, x, ids in TEXTS)
    )
    subprocess.run(
        [sys.executable, "-m", "cn_clip.eval.transform_ir_annotation_to_tr", "--input", str(annotations)],
        check=True,
        capture_output=True,
    )
    ours = write_gold(tmp_path / "ours.tr.jsonl", "image_id", "text_ids", image_to_text_gold(TEXTS))
    assert ours.read_bytes() == (tmp_path / "valid_texts.tr.jsonl").read_bytes()


def test_recalls_and_scores_equal_the_official_scorer(tmp_path):
    generator = np.random.default_rng(0)
    gold = {
        query: sorted(generator.choice(40, size=int(generator.integers(1, 3)), replace=False).tolist())
        for query in range(30)
    }
    predictions = {query: generator.permutation(40)[:10].tolist() for query in gold}
    gold_path = write_predictions(tmp_path / "gold.jsonl", "text_id", "image_ids", list(gold), gold.values())
    predicted = write_predictions(
        tmp_path / "pred.jsonl", "text_id", "image_ids", list(predictions), predictions.values()
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cn_clip.eval.evaluation",
            str(gold_path),
            str(predicted),
            str(tmp_path / "official.json"),
        ],
        check=True,
        capture_output=True,
    )
    ours = write_scores(tmp_path / "ours.json", score_document(*recalls(gold, predictions)))
    assert ours.read_bytes() == (tmp_path / "official.json").read_bytes()
    r1, r5, r10 = recalls(gold, predictions)
    assert 0 <= r1 <= r5 <= r10 <= 1 and r10 > 0


def test_recall_counts_a_hit_when_any_gold_id_is_in_the_top_k():
    gold = {0: [3, 9], 1: [4]}
    predictions = {0: [1, 2, 3, 0, 5, 6, 7, 8, 10, 11], 1: [4, *range(20, 29)]}
    assert recalls(gold, predictions) == (0.5, 1.0, 1.0)


GALLERY = list(range(100, 112))


@pytest.mark.parametrize(
    "line, words",
    [
        pytest.param(
            {"text_id": 50, "image_ids": GALLERY[:10]}, "line 1: text 50 is not in TOY/valid", id="foreign query"
        ),
        pytest.param(
            {"text_id": 0, "image_ids": [50, *GALLERY[:9]]}, "line 1: image 50 is not in TOY/valid", id="foreign answer"
        ),
        pytest.param(
            {"text_id": 0, "image_ids": GALLERY[:9]},
            "line 1: 9 distinct image_ids, the official scorer needs 10",
            id="nine",
        ),
        pytest.param({"text_id": 0, "image_ids": [100] * 10}, "line 1: 1 distinct image_ids", id="repeated"),
        pytest.param({"text_id": "x", "image_ids": GALLERY[:10]}, "line 1: not a predictions line", id="not an id"),
    ],
)
def test_a_predictions_line_this_split_cannot_score_is_one_line_naming_the_file_line_and_id(tmp_path, line, words):
    path = tmp_path / "valid_predictions.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(DataError, match=words):
        read_predictions(path, "text_id", "image_ids", list(range(4)), GALLERY, "TOY/valid")


def test_a_query_twice_in_predictions_is_refused(tmp_path):
    path = tmp_path / "valid_predictions.jsonl"
    path.write_text(2 * (json.dumps({"text_id": 0, "image_ids": GALLERY[:10]}) + "\n"))
    with pytest.raises(DataError, match=r"valid_predictions.jsonl, line 2: text_id 0 again"):
        read_predictions(path, "text_id", "image_ids", [0], GALLERY, "TOY/valid")


def test_recalls_of_a_gold_query_without_predictions_name_the_query():
    with pytest.raises(DataError, match="no predictions for query 50 of the gold"):
        recalls({50: [100]}, {0: GALLERY[:10]})
