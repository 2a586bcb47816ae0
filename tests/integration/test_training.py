"""``esq run squeeze``, ``baseline`` and ``visualize`` end to end on the synthetic set with the
tiny CNN (esq-backbones) and esq-quantizers: checkpoints that rebuild themselves, the previous
tool's .pth files, resuming, and the errors a user meets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import esq
from esq.cli.main import make_cli
from esq.errors import CheckpointError
from esq.segmentation_data import open_segmentation
from esq.training.segmentation_metrics import SegmentationScores

SMALL = ["--synthetic-size", "30", "--image-size", "32", "--batch-size", "8", "--lr", "1e-3", "--epochs", "1"]


def esq_run(tmp_path: Path, pipeline: str, *options: str, expect: int = 0):
    arguments = ["run", pipeline, *options, "--output-dir", str(tmp_path / "runs"), "--json"]
    result = CliRunner().invoke(make_cli(), arguments)
    assert result.exit_code == expect, result.output
    runs = sorted((tmp_path / "runs" / pipeline).glob("*"), key=lambda path: path.stat().st_mtime)
    return result, (runs[-1] if runs else None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One squeeze (vq) and one baseline run, shared by the tests below."""
    root = tmp_path_factory.mktemp("trained")
    squeeze_result, squeeze = esq_run(root, "squeeze", *SMALL, "--quantizer", "vq", "--codebook-size", "16")
    baseline_result, baseline = esq_run(root, "baseline", *SMALL)
    return {
        "squeeze": (json.loads(squeeze_result.stdout)[0], squeeze),
        "baseline": (json.loads(baseline_result.stdout)[0], baseline),
    }


def test_squeeze_writes_checkpoints_logs_and_the_test_scores(trained):
    row, run = trained["squeeze"]
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    with open(run / "logs" / "csv" / "metrics.csv") as handle:
        columns = next(csv.reader(handle))
    assert {"train/loss", "train/quantizer_loss", "val/mean_iou", "val/codebook_usage", "test/mean_iou"} <= set(columns)
    assert list((run / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert row["quantizer"] == "vq" and row["bits_per_vector"] == 4.0  # log2(16)
    assert row["compression_ratio"] == pytest.approx(32 * 32 / 4.0)  # tiny_cnn: 32-d features
    assert 0.0 <= row["mean_iou"] <= 1.0 and 0.0 < row["pixel_accuracy"] <= 1.0
    assert 1.0 <= row["perplexity"] <= 16.0 and 0.0 < row["codebook_usage"] <= 1.0
    document = json.loads((run / "results.json").read_text())
    assert document["summary"]["best_checkpoint"] == "checkpoints/best.ckpt"


def test_a_checkpoint_rebuilds_the_model_alone_and_scores_what_the_run_reported(trained):
    row, run = trained["squeeze"]
    model = esq.load_checkpoint(run / "checkpoints" / "best.ckpt")
    hparams = model.hparams
    assert (hparams["backbone"], hparams["quantizer"], hparams["num_classes"]) == ("tiny_cnn", "vq", 4)
    assert hparams["quantizer_options"]["codebook_size"] == 16 and hparams["data"]["dataset"] == "synthetic"
    test_set = open_segmentation(**hparams["data"], split="test")
    scores = SegmentationScores(4)
    images, masks = zip(*(test_set[i] for i in range(len(test_set))), strict=True)
    scores.update(model.predict(torch.stack(images)), torch.stack(masks))
    assert float(scores.compute()["mean_iou"]) == pytest.approx(row["mean_iou"], abs=1e-6)


def test_baseline_has_no_quantizer_and_full_precision_bits(trained):
    row, run = trained["baseline"]
    assert row["quantizer"] == "none" and row["bits_per_vector"] == 32 * 32 and row["compression_ratio"] == 1.0
    assert esq.load_checkpoint(run / "checkpoints" / "last.ckpt").model.quantizer is None


def test_visualize_ranks_samples_and_draws_both_grids(trained, tmp_path):
    vq = trained["squeeze"][1] / "checkpoints" / "best.ckpt"
    baseline = trained["baseline"][1] / "checkpoints" / "best.ckpt"
    options = ["--vq-checkpoint", str(vq), "--baseline-checkpoint", str(baseline), "--n-best", "2", "--n-worst", "3"]
    result, run = esq_run(tmp_path, "visualize", *options)
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    gap = rows["gap (quantized − baseline)"]["mean_iou"]
    assert gap == pytest.approx(rows["quantized"]["mean_iou"] - rows["baseline"]["mean_iou"])
    for name in ("best_results_test.png", "worst_results_test.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_and_a_checkpoint_of_another_quantizer_is_refused(trained, tmp_path):
    last = trained["squeeze"][1] / "checkpoints" / "last.ckpt"
    options = [*SMALL[:-1], "2", "--quantizer", "vq", "--codebook-size", "16", "--resume", str(last)]
    result, run = esq_run(tmp_path, "squeeze", *options)
    assert json.loads((run / "results.json").read_text())["summary"]["epochs"] == 2
    result, _ = esq_run(tmp_path, "squeeze", *SMALL, "--quantizer", "fsq", "--resume", str(last), expect=1)
    assert "a checkpoint of quantizer 'vq', but this run uses quantizer 'fsq'" in result.output


def test_visualize_refuses_a_checkpoint_of_another_backbone(trained, tmp_path):
    vq = trained["squeeze"][1] / "checkpoints" / "best.ckpt"
    options = ["--vq-checkpoint", str(vq), "--baseline-checkpoint", str(vq), "--model", "deeplab"]
    result, _ = esq_run(tmp_path, "visualize", *options, expect=1)
    assert "a checkpoint of backbone 'tiny_cnn', but this run uses backbone 'deeplabv3_resnet50'" in result.output


def test_corrupt_and_foreign_checkpoints_are_one_line(tmp_path):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        esq.load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder": {}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="unknown checkpoint layout; found keys encoder, epoch"):
        esq.load_checkpoint(foreign)


def test_a_nan_loss_stops_with_the_step_and_the_cause(trained):
    from esq.training.module import TrainingError

    model = esq.load_checkpoint(trained["baseline"][1] / "checkpoints" / "last.ckpt").train()
    batch = (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, 32, 32, dtype=torch.int64))

    class Diverged(torch.nn.Module):  # what a head that blew up gives
        def forward(self, logits, target):
            return logits.sum() * float("nan")

    model.loss = Diverged()
    with pytest.raises(TrainingError, match=r"not finite at step 0 \(epoch 0\): the segmentation loss diverged"):
        model.training_step(batch, 0)
    images = torch.full((2, 3, 32, 32), float("nan"))
    with pytest.raises(TrainingError, match=r"the input batch holds NaN or infinite pixels"):
        model.training_step((images, batch[1]), 0)


def test_an_empty_split_is_one_line(tmp_path):
    result, _ = esq_run(tmp_path, "baseline", "--synthetic-size", "2", "--epochs", "1", expect=1)
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
