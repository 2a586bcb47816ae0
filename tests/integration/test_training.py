"""``esq run squeeze``, ``baseline`` and ``visualize`` end to end on the synthetic set with the
tiny CNN (esq-backbones) and esq-quantizers: checkpoints that rebuild themselves, the previous
tool's .pth files, resuming, and the errors a user meets."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import esq
from esq.builtin.checkpoints import load_checkpoint
from esq.builtin.data.segmentation import open_segmentation
from esq.builtin.training.segmentation_metrics import SegmentationScores
from esq.cli.main import make_cli
from esq.errors import CheckpointError
from training_runs import esq_run

SMALL = ["--synthetic-size", "30", "--image-size", "32", "--batch-size", "8", "--lr", "1e-3", "--epochs", "1"]
# for a folder dataset, which synthetic_size would not apply to
FILES_SMALL = SMALL[2:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One squeeze (vq) and one baseline run, shared by the tests below."""
    root = tmp_path_factory.mktemp("trained")
    squeeze_result, squeeze = esq_run(root, "squeeze", *SMALL, "--quantizer", "vq", "--codebook-size", "16")
    baseline_result, baseline = esq_run(root, "baseline", *SMALL)
    return {
        "squeeze": (scores(json.loads(squeeze_result.stdout)), squeeze),
        "baseline": (scores(json.loads(baseline_result.stdout)), baseline),
    }


def scores(rows):
    """A run's settings and its whole-model scores (the rows of no class and no level), as one dict."""
    whole = {row["metric"]: row["value"] for row in rows if row["class"] is None and row["level"] is None}
    return {**{k: v for k, v in rows[0].items() if k not in ("metric", "class", "level", "value")}, **whole}


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


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_results_csv_is_one_row_per_metric_with_the_settings_that_tell_runs_apart(trained):
    _, run = trained["squeeze"]
    rows = read_csv(run / "results.csv")
    assert len({(row["metric"], row["class"], row["level"]) for row in rows}) == len(rows)
    for column, value in {
        "codebook_size": "16",
        "bottleneck_dim": "64",
        "bits_per_vector": "4.0",
        "split": "test",
    }.items():
        assert {row[column] for row in rows} == {value}
    assert {row["dataset"] for row in rows} == {"synthetic"} and {row["epochs"] for row in rows} == {"1"}
    classes = load_checkpoint(run / "checkpoints" / "best.ckpt").hparams["class_names"]
    assert [row["class"] for row in rows if row["metric"] == "iou"] == classes
    assert {"mean_iou", "pixel_accuracy", "codebook_usage", "perplexity", "dead_codes"} <= {
        row["metric"] for row in rows
    }
    _, baseline = trained["baseline"]
    baseline_rows = read_csv(baseline / "results.csv")
    assert {row["quantizer"] for row in baseline_rows} == {"none"} and "codebook_size" not in baseline_rows[0]
    assert not [row for row in baseline_rows if row["metric"] == "codebook_usage"]


def test_codebook_usage_is_that_of_every_test_code_and_the_confusion_matrix_gives_the_ious(trained):
    _, run = trained["squeeze"]
    rows = {(row["metric"], row["class"]): row["value"] for row in read_csv(run / "results.csv")}
    model = load_checkpoint(run / "checkpoints" / "best.ckpt")
    test_set = open_segmentation(**model.hparams["data"], split="test")
    images, masks = zip(*(test_set[i] for i in range(len(test_set))), strict=True)
    backbone = model.model.backbone
    codes = model.model.quantizer.encode(backbone.embed(backbone.preprocess(torch.stack(images))))
    assert float(rows["distinct_codes", ""]) == codes.unique().numel()
    assert float(rows["codebook_usage", ""]) == pytest.approx(codes.unique().numel() / 16)
    with open(run / "confusion_matrix.csv", newline="") as handle:
        header, *lines = list(csv.reader(handle))
    confusion = torch.tensor([[int(count) for count in line[1:]] for line in lines])
    assert header[1:] == [line[0] for line in lines] == model.hparams["class_names"]
    assert int(confusion.sum()) == int((torch.stack(masks) != 255).sum())
    union = confusion.sum(0) + confusion.sum(1) - confusion.diagonal()
    for name, intersection, size in zip(header[1:], confusion.diagonal().tolist(), union.tolist(), strict=True):
        assert (
            (rows["iou", name] == "") if size == 0 else float(rows["iou", name]) == pytest.approx(intersection / size)
        )
    summary = json.loads((run / "results.json").read_text())["summary"]
    assert summary["confusion_matrix"] == "confusion_matrix.csv" and summary["class_names"] == header[1:]


def test_a_checkpoint_rebuilds_the_model_alone_and_scores_what_the_run_reported(trained):
    row, run = trained["squeeze"]
    model = load_checkpoint(run / "checkpoints" / "best.ckpt")
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
    assert load_checkpoint(run / "checkpoints" / "last.ckpt").model.quantizer is None


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
    with pytest.raises(CheckpointError, match="torch cannot read it"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder": {}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="unknown checkpoint layout; found keys encoder, epoch"):
        load_checkpoint(foreign)


def test_a_nan_loss_stops_with_the_step_and_the_cause(trained):
    from esq.builtin.training.module import TrainingError

    model = load_checkpoint(trained["baseline"][1] / "checkpoints" / "last.ckpt").train()
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


def test_a_relative_output_dir_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(make_cli(), ["run", "baseline", *SMALL, "--output-dir", "runs", "--json"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs" / "baseline").iterdir()
    assert json.loads((run / "results.json").read_text())["summary"]["best_checkpoint"] == "checkpoints/best.ckpt"


def test_an_empty_split_is_one_line(tmp_path):
    result, _ = esq_run(tmp_path, "baseline", "--synthetic-size", "2", "--epochs", "1", expect=1)
    assert result.output.startswith("Error: ") and "Traceback" not in result.output


def legacy_file(path: Path, module, method: str) -> Path:
    """A .pth as the previous tool wrote it: its own names for the adapters' layers, prefixes."""
    renamed = ("conv1.weight", "conv1.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
    renamed += ("bn.num_batches_tracked", "conv2.weight", "conv2.bias")
    model = module.model
    document = {
        "method": method,
        "backbone_state_dict": {f"model.{k}": v for k, v in model.backbone.network.state_dict().items()},
        "classifier_state_dict": model.backbone.head.state_dict(),
        "quantizer_state_dict": model.quantizer.state_dict() if model.quantizer is not None else None,
        "has_encoder_adapter": model.encoder_adapter is not None,
        "has_decoder_adapter": model.decoder_adapter is not None,
    }
    for side in ("encoder", "decoder"):
        adapter = getattr(model, f"{side}_adapter")
        state = adapter.state_dict().values() if adapter is not None else None
        document[f"{side}_adapter_state_dict"] = dict(zip(renamed, state, strict=True)) if state else None
    torch.save(document, path)
    return path


def test_the_previous_tools_pth_loads_into_the_same_model(tmp_path):
    from esq.builtin.training.module import SegmentationModule

    torch.manual_seed(0)
    options = {"codebook_size": 32, "bottleneck_dim": 16}
    module = SegmentationModule(
        backbone="tiny_cnn",
        num_classes=3,
        quantizer="vq",
        quantizer_options=options,
        encoder_adapter=True,
        decoder_adapter=True,
        plugins=esq.load_plugins(),
    )
    with torch.no_grad():  # weights no random init gives: a loader that skipped them would differ
        for parameter in module.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    module.eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    loaded = load_checkpoint(legacy_file(tmp_path / "vq.pth", module, "vq"))
    assert (loaded.hparams["backbone"], loaded.hparams["num_classes"]) == ("tiny_cnn", 3)
    assert {k: loaded.hparams["quantizer_options"][k] for k in options} == options
    torch.testing.assert_close(loaded(images), module(images), rtol=0, atol=0)
    baseline = SegmentationModule(backbone="tiny_cnn", num_classes=3, plugins=esq.load_plugins()).eval()
    loaded = load_checkpoint(legacy_file(tmp_path / "baseline.pth", baseline, "baseline"))
    assert loaded.model.quantizer is None
    torch.testing.assert_close(loaded(images), baseline(images), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="a checkpoint of quantizer 'none', but this run uses quantizer 'vq'"):
        load_checkpoint(tmp_path / "baseline.pth", quantizer="vq")


def test_two_processes_with_ddp_share_one_run_directory_and_save_a_loadable_checkpoint(tmp_path):
    command = [str(Path(sys.executable).with_name("esq")), "run", "squeeze", *SMALL, "--devices", "2"]
    command += ["--strategy", "ddp", "--codebook-size", "16", "--output-dir", str(tmp_path), "--json"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = json.loads(finished.stdout)  # the second process printed nothing
    (run,) = (tmp_path / "squeeze").iterdir()
    assert (run / "run-rank1.log").is_file() and "DDP" not in finished.stdout
    assert json.loads((run / "results.json").read_text())["rows"] == rows
    assert (run / "confusion_matrix.csv").is_file()
    model = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert model.hparams["quantizer"] == "vq" and model.bits_per_vector == 4.0


def write_folder(root: Path, bad_label: int | None = None) -> Path:
    """``root/images``, ``root/masks``: 6 images of two classes (a bright square on black)."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(6):
        mask = np.zeros((24, 24), dtype=np.uint8)
        mask[4 + index : 14 + index, 6:16] = 1
        if bad_label is not None and index == 4:
            mask[0, 0] = bad_label
        Image.fromarray(np.stack([mask * 200] * 3, axis=-1)).save(root / "images" / f"im{index}.png")
        Image.fromarray(mask).save(root / "masks" / f"im{index}.png")
    return root


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--dataset", "folder", "--num-classes", "2"], "im4.png"),
        (["--use_clearml"], "use_clearml: esq does not log to ClearML; --logger mlflow logs to MLflow"),
        (["--quantizer_type", "vqq"], "unknown quantizer 'vqq' (did you mean 'vq'"),
    ],
)
def test_bad_input_is_one_line(tmp_path, options, message):
    data = write_folder(tmp_path / "data", bad_label=7)
    arguments = [*SMALL, *options]
    if "folder" in options:
        arguments = [*FILES_SMALL, *options, "--data-path", str(data)]
    result, _ = esq_run(tmp_path, "squeeze", *arguments, expect=1)
    assert result.output.startswith("Error: ") and message in result.output
    assert result.output.count("\n") == 1, result.output


def test_a_folder_dataset_trains(tmp_path):
    data = write_folder(tmp_path / "data")
    result, run = esq_run(
        tmp_path, "baseline", *FILES_SMALL, "--dataset", "folder", "--data-path", str(data), "--num-classes", "2"
    )
    assert scores(json.loads(result.stdout))["mean_iou"] >= 0.0
    assert load_checkpoint(run / "checkpoints" / "best.ckpt").hparams["data"]["data_path"] == str(data)


def test_mlflow_is_used_when_installed_and_asked_for(tmp_path):
    try:
        import mlflow  # noqa: F401
    except ModuleNotFoundError:
        result, _ = esq_run(tmp_path, "baseline", *SMALL, "--logger", "mlflow", expect=1)
        assert "loggers: mlflow is not installed; pip install mlflow" in result.output
    else:
        _, run = esq_run(tmp_path, "baseline", *SMALL, "--logger", "mlflow", "--project-name", "trial")
        assert (run / "logs" / "mlruns").is_dir()


REFUSED_BEFORE_THE_RUN = [
    (
        ["squeeze", "--quantizer", "lfq", "--codebook-size", "100"],
        "quantizer: lfq: codebook_size must be a power of two",
    ),
    (
        ["squeeze", "--quantizer", "vq", "--codebook-size", "1"],
        "quantizer: vq: codebook_size must be an integer at least 2",
    ),
    (["squeeze", "--quantizer", "vq", "--quantizer-options", "{decay = 2.0}"], "quantizer: vq: decay"),
    (["squeeze", "--quantizer", "vqq"], "unknown quantizer 'vqq' (did you mean 'vq'"),
    (["baseline", "--model", "resnet50"], "model: backbone 'resnet50' is not a segmentation backbone"),
    (["baseline", "--backbone-options", "{widht = 3}"], "model: backbone 'tiny_cnn' has no option 'widht'"),
    (["baseline", "--model", "deeplab", "--backbone-options", "{weights = 'default'}"], "which is missing; download"),
    (["baseline", "--model", "tiny_cnn", "--backbone-options", "{weights = 'nowhere.pt'}"], "nowhere.pt"),
    (["baseline", "--resume", "nowhere/last.ckpt"], "resume: no checkpoint at nowhere/last.ckpt"),
    (["baseline", "--use_clearml"], "use_clearml: esq does not log to ClearML"),
]


@pytest.mark.parametrize(("options", "message"), REFUSED_BEFORE_THE_RUN)
def test_a_mistake_in_the_options_is_refused_before_the_run_directory_exists(tmp_path, options, message):
    pipeline, *rest = options
    result, run = esq_run(tmp_path, pipeline, *rest, expect=1)
    assert message in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "runs").exists() and run is None


def test_a_logger_that_is_not_installed_is_refused_before_the_run_directory_exists(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    result, _ = esq_run(tmp_path, "baseline", "--logger", "csv", "--logger", "mlflow", expect=1)
    assert "loggers: mlflow is not installed; pip install mlflow" in result.output
    assert not (tmp_path / "runs").exists()
