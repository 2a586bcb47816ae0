"""``esq run retrieval --quantizer``: esq-clip finds a quantizer of esq-quantizers through the
registry, fits it on both modalities' embeddings (``fit_on``) and scores original and squeezed
embeddings side by side, with what the squeeze did to each modality (codebook usage, distinct
codes, perplexity, reconstruction error), a warning when the code collapsed, and the codes saved;
typed as the official evaluation script's options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from clip_dataset import write_split
from PIL import Image

import esq
import esq_quantizers
from esq import RunContext
from esq.cli.main import make_cli
from esq_clip.recall import write_features

IMAGES = 12
TEXTS = 24


def write_features_folder(folder: Path) -> None:
    """Unit image features in 16 dimensions; each text is its image's feature plus a little noise."""
    import torch

    generator = np.random.default_rng(0)
    images = generator.normal(size=(IMAGES, 16))
    texts = images[np.arange(TEXTS) % IMAGES] + 0.05 * generator.normal(size=(TEXTS, 16))
    images, texts = (torch.as_tensor(x / np.linalg.norm(x, axis=1, keepdims=True)) for x in (images, texts))
    folder.mkdir(parents=True)
    write_features(folder / "valid_imgs.img_feat.jsonl", "image_id", list(range(100, 100 + IMAGES)), images)
    write_features(folder / "valid_texts.txt_feat.jsonl", "text_id", list(range(TEXTS)), texts)


def write_dataset(tmp_path: Path) -> Path:
    dataset = tmp_path / "data" / "datasets" / "TOY"
    dataset.mkdir(parents=True)
    pixel = Image.new("RGB", (4, 4))
    texts = [(text_id, f"文本{text_id}", [100 + text_id % IMAGES]) for text_id in range(TEXTS)]
    write_split(dataset, "valid", {image_id: pixel for image_id in range(100, 100 + IMAGES)}, texts)
    write_features_folder(tmp_path / "previous" / "random")
    return dataset


def squeezed_retrieval(tmp_path: Path, *more: str):
    options = ["--datapath", str(tmp_path / "data"), "--dataset-name", "TOY", "--split", "valid", "--model-path"]
    options += ["none", "--skip-extraction", "--features-dir", str(tmp_path / "previous"), "--quantizer", "vq"]
    options += ["--quantizer-options", "{codebook_size = 4}", "--quantizer-steps", "20", *more]
    result = CliRunner().invoke(make_cli(), ["run", "retrieval", *options, "--json", "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return result


def test_recall_of_original_and_squeezed_embeddings_side_by_side(tmp_path):
    dataset = write_dataset(tmp_path)
    result = squeezed_retrieval(tmp_path)
    rows = {(row["embeddings"], row["direction"]): row for row in json.loads(result.stdout)}
    assert set(rows) == {(e, d) for e in ("original", "vq") for d in ("text_to_image", "image_to_text")}
    assert rows["original", "text_to_image"]["bits_per_vector"] == 32 * 16
    assert rows["vq", "text_to_image"]["bits_per_vector"] == 2.0
    assert rows["original", "text_to_image"]["r1"] == 100.0
    # four codes for twelve images: tied images rank by id, so at most one per code is found first
    assert rows["vq", "text_to_image"]["r1"] <= 100.0 * 4 / IMAGES
    (run,) = (tmp_path / "retrieval").iterdir()
    folder = run / "random"
    scored = tmp_path / "official.json"
    gold = dataset / "valid_texts.jsonl"
    command = ["-m", "cn_clip.eval.evaluation", str(gold), str(folder / "valid_predictions.vq.jsonl"), str(scored)]
    subprocess.run([sys.executable, *command], check=True, capture_output=True)
    assert json.loads(scored.read_text())["scoreJson"]["r1"] == rows["vq", "text_to_image"]["r1"]
    assert (folder / "text_to_image_results.vq.json").read_text() == scored.read_text()

    # what the squeeze did, per modality: four codes cannot tell twelve gold images apart
    vq = rows["vq", "text_to_image"]
    assert vq["fit_on"] == "both"
    for modality, count in (("images", IMAGES), ("texts", TEXTS)):
        packed = folder / f"valid_{'imgs' if modality == 'images' else 'texts'}.codes.vq.esq"
        assert vq[f"{modality}_code_bytes"] == packed.stat().st_size
        codes = esq_quantizers.unpack(packed).codes.reshape(count, -1).numpy()
        assert codes.shape == (count, 1) and codes.min() >= 0 and codes.max() < 4
        assert vq[f"{modality}_distinct_codes"] == len(np.unique(codes, axis=0)) <= 4
        assert 0 < vq[f"{modality}_codebook_usage"] <= 1 and 1 <= vq[f"{modality}_perplexity"] <= 4
        assert vq[f"{modality}_reconstruction_error"] > 0
    assert rows["original", "text_to_image"].get("images_distinct_codes") is None
    log = (run / "run.log").read_text()
    assert f"the {IMAGES} images take {vq['images_distinct_codes']} distinct codes, fewer than the {IMAGES}" in log


def test_a_quantizer_whose_codes_collapse_is_a_warning_beside_its_recall(tmp_path):
    write_dataset(tmp_path)
    squeezed_retrieval(tmp_path, "--quantizer-options", "{codebook_size = 512}", "--quantizer-steps", "0")
    (run,) = (tmp_path / "retrieval").iterdir()
    assert "of the codebook (under 10%): the recall below measures a collapsed code" in (run / "run.log").read_text()


def test_reading_the_files_and_fitting_the_quantizer_show_progress(tmp_path, monkeypatch):
    shown = []

    def progress(self, items, description, total=None):
        shown.append(description)
        return iter(items)

    monkeypatch.setattr(RunContext, "progress", progress)
    write_dataset(tmp_path)
    squeezed_retrieval(tmp_path, "--quantizer-steps", "3")
    assert {"random: fitting vq", "reading valid_imgs.img_feat.jsonl", "reading valid_texts.txt_feat.jsonl"} <= set(
        shown
    )
    assert {"reading valid_predictions.vq.jsonl", "reading valid_tr_predictions.jsonl"} <= set(shown)


@pytest.mark.parametrize("fit_on, rows", [("both", IMAGES + TEXTS), ("images", IMAGES), ("texts", TEXTS)])
def test_the_quantizer_fits_on_both_modalities_unless_told_otherwise(tmp_path, monkeypatch, fit_on, rows):
    fitted = []
    monkeypatch.setattr(esq, "fit_quantizer", lambda quantizer, features, *_: fitted.append(features))
    write_dataset(tmp_path)
    squeezed_retrieval(tmp_path, *(["--fit-on", fit_on] if fit_on != "both" else []))
    assert [tuple(features.shape) for features in fitted] == [(1, rows, 16)]
