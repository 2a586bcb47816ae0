"""What goes wrong around training, and what esq then does: ``last.ckpt`` is the last epoch, a
signal ends the run non-zero with a checkpoint to resume from, damaged or foreign checkpoints
and weights are refused with the file's name, no file runs code when loaded, and every mistake
of the options is one line before the run directory exists."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

import esq
from esq.builtin.checkpoints import load_checkpoint
from esq.errors import CheckpointError
from training_runs import esq_run

TINY = ["--image-size", "32", "--batch-size", "4", "--lr", "1e-3"]
SMALL = ["--synthetic-size", "12", *TINY, "--epochs", "1"]
ESQ = str(Path(sys.executable).with_name("esq"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch squeeze run (vq, 16 codes)."""
    root = tmp_path_factory.mktemp("finished")
    _, run = esq_run(root, "squeeze", *SMALL, "--codebook-size", "16")
    return run


def flip_a_byte(source: Path, target: Path) -> Path:
    """``source`` with one byte of its largest member's data inverted: its CRC-32 no longer fits."""
    with zipfile.ZipFile(source) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(source.read_bytes())
    header = member.header_offset
    name_length = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_length = int.from_bytes(data[header + 28 : header + 30], "little")
    data[header + 30 + name_length + extra_length + member.file_size // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


# --- last.ckpt and signals -------------------------------------------------------------------


def test_last_ckpt_holds_the_last_epoch_even_when_it_is_not_the_best(tmp_path):
    # a learning rate too small to change a prediction: every epoch scores what the first did, so
    # the best checkpoint stays at epoch 0 and only a last.ckpt of its own reaches epoch 2
    _, run = esq_run(tmp_path, "squeeze", "--synthetic-size", "12", *TINY, "--epochs", "3", "--lr", "1e-12")
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert last["epoch"] == 2 and best["epoch"] == 0
    assert last["global_step"] == 3 * best["global_step"]


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.is_file():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_training_ends_the_run_non_zero_with_a_last_ckpt_to_resume(tmp_path, signum, code):
    options = ["--synthetic-size", "120", *TINY, "--batch-size", "2", "--epochs", "50", "--logger", "csv"]
    command = [ESQ, "run", "squeeze", *options, "--codebook-size", "16", "--output-dir", str(tmp_path / "runs")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        (run,) = _wait_for_run(tmp_path / "runs" / "squeeze", process)
        wait_for(run / "checkpoints" / "last.ckpt", process)
        time.sleep(0.5)  # into the next epoch
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, stderr
    *progress, error = stderr.strip().splitlines()
    assert error == f"Error: interrupted by {signal.Signals(signum).name}", stderr
    assert all(line.startswith("training tiny_cnn + vq, epoch ") for line in progress), stderr  # progress lines only
    assert "Traceback" not in stderr and "interrupted" in (run / "run.log").read_text()
    assert json.loads((run / "results.json").read_text())["status"] == "interrupted"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] > 0
    if signum == signal.SIGTERM:  # and it resumes, saying from where
        epochs = str(last["epoch"] + 2)
        resume = ["--synthetic-size", "120", *TINY, "--batch-size", "2", "--epochs", epochs, "--logger", "csv"]
        _, resumed = esq_run(
            tmp_path, "squeeze", *resume, "--codebook-size", "16", "--resume", str(run / "checkpoints" / "last.ckpt")
        )
        log = (resumed / "run.log").read_text()
        assert f"resumed from {run / 'checkpoints' / 'last.ckpt'}" in log
        assert json.loads((resumed / "results.json").read_text())["summary"]["epochs"] == int(epochs)


def _wait_for_run(folder: Path, process: subprocess.Popen) -> list[Path]:
    deadline = time.monotonic() + 120
    while not (folder.is_dir() and list(folder.iterdir())):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return list(folder.iterdir())


# --- damaged and malformed checkpoints --------------------------------------------------------


def test_a_checkpoint_with_a_flipped_byte_is_refused_naming_it(finished, tmp_path):
    damaged = flip_a_byte(finished / "checkpoints" / "best.ckpt", tmp_path / "damaged.ckpt")
    with pytest.raises(CheckpointError, match=r"damaged\.ckpt: damaged: the checksum \(CRC-32\) of its member"):
        load_checkpoint(damaged)


def test_a_weights_file_with_a_flipped_byte_is_refused_naming_it(tmp_path):
    backbones = esq.registry("backbones")
    path = tmp_path / "tiny.pt"
    torch.save(backbones.create("tiny_cnn", num_classes=2).network.state_dict(), path)
    backbones.create("tiny_cnn", num_classes=2, weights=str(path))  # the good file loads
    damaged = flip_a_byte(path, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=r"tiny_cnn: weights file .*damaged\.pt: damaged: the checksum"):
        backbones.create("tiny_cnn", num_classes=2, weights=str(damaged))


def rewritten(finished: Path, tmp_path: Path, change) -> Path:
    checkpoint = torch.load(finished / "checkpoints" / "best.ckpt", weights_only=True)
    change(checkpoint)
    path = tmp_path / "changed.ckpt"
    torch.save(checkpoint, path)
    return path


def legacy(tmp_path: Path, **changes) -> Path:
    from esq.builtin.training.module import SegmentationModule

    module = SegmentationModule(backbone="tiny_cnn", num_classes=2, plugins=esq.load_plugins())
    document = {
        "method": "baseline",
        "backbone_state_dict": module.model.backbone.network.state_dict(),
        "classifier_state_dict": module.model.backbone.head.state_dict(),
        **changes,
    }
    path = tmp_path / "legacy.pth"
    torch.save(document, path)
    return path


MALFORMED = {
    "hyper_parameters a string": (
        lambda c: c.update(hyper_parameters="backbone=tiny_cnn"),
        "its hyper_parameters are a str, not a table of settings",
    ),
    "an unknown hyper-parameter": (
        lambda c: c["hyper_parameters"].update(dropout=0.5),
        r"unknown hyper-parameter\(s\) dropout",
    ),
    "no backbone": (lambda c: c["hyper_parameters"].pop("backbone"), "its hyper_parameters lack backbone"),
    "num_classes a string": (
        lambda c: c["hyper_parameters"].update(num_classes="4"),
        r"hyper-parameter num_classes is '4' \(str\), expected int",
    ),
    "a feature backbone": (
        lambda c: c["hyper_parameters"].update(backbone="resnet50"),
        "backbone 'resnet50' is not a segmentation backbone .*; these are: .*tiny_cnn",
    ),
    "a state_dict of lists": (
        lambda c: c.update(state_dict={"w": [1, 2]}),
        "its state_dict is a dict holding non-tensors",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_checkpoint_is_one_checkpoint_error_naming_the_file(finished, tmp_path, case):
    change, message = MALFORMED[case]
    path = rewritten(finished, tmp_path, change)
    with pytest.raises(CheckpointError, match=f"changed.ckpt: .*{message}") as raised:
        load_checkpoint(path)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"has_encoder_adapter": True}, "has_encoder_adapter is true but encoder_adapter_state_dict is missing"),
        ({"has_decoder_adapter": True, "decoder_adapter_state_dict": None}, "decoder_adapter_state_dict is empty"),
        ({"method": "vq"}, "its method is 'vq' but quantizer_state_dict is missing"),
        ({"has_encoder_adapter": "yes"}, "has_encoder_adapter is 'yes', expected true or false"),
        ({"method": 3}, "its method is 3, expected a quantizer name"),
        ({"backbone_state_dict": [1, 2]}, "its backbone_state_dict is a list, expected a dict of tensors"),
    ],
)
def test_a_legacy_file_missing_a_state_it_declares_is_one_checkpoint_error(tmp_path, changes, message):
    with pytest.raises(CheckpointError, match=f"legacy.pth: .*{message}"):
        load_checkpoint(legacy(tmp_path, **changes))


# --- files that would run code ----------------------------------------------------------------


class Payload:
    """Unpickling it would create ``path``: the proof that a loader ran code from a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _evil_ckpt(finished: Path, tmp_path: Path, marker: Path, where: str) -> Path:
    checkpoint = torch.load(finished / "checkpoints" / "best.ckpt", weights_only=True)
    if where == "state_dict":
        checkpoint["state_dict"]["model.backbone.head.0.weight"] = Payload(marker)
    else:
        checkpoint["hyper_parameters"]["backbone_options"] = {"weights": Payload(marker)}
    path = tmp_path / f"evil-{where}.ckpt"
    torch.save(checkpoint, path)
    return path


def _evil_weights(tmp_path: Path, marker: Path, wrapped: bool, zip_format: bool = True) -> Path:
    state = esq.registry("backbones").create("tiny_cnn", num_classes=2).network.state_dict()
    state["block1.0.weight"] = Payload(marker)
    path = tmp_path / f"evil-{wrapped}-{zip_format}.pt"
    torch.save({"state_dict": state} if wrapped else state, path, _use_new_zipfile_serialization=zip_format)
    return path


def _evil_legacy(tmp_path: Path, marker: Path) -> Path:
    return legacy(tmp_path, backbone_state_dict={"block1.0.weight": Payload(marker)})


def _load(path: Path) -> None:
    load_checkpoint(path)


def _weights(path: Path) -> None:
    esq.registry("backbones").create("tiny_cnn", num_classes=2, weights=str(path))


def _cli(tmp_path: Path, *arguments: str):
    def run(path: Path) -> None:
        result, _ = esq_run(tmp_path, *[argument.format(path=path) for argument in arguments], expect=1)
        assert result.output.count("\n") == 1 and "unexpected" not in result.output
        raise CheckpointError(result.output)

    return run


ROUTES = {
    "load_checkpoint, state_dict": (lambda f, t, m: _evil_ckpt(f, t, m, "state_dict"), lambda t: _load),
    "load_checkpoint, hyper_parameters": (lambda f, t, m: _evil_ckpt(f, t, m, "hparams"), lambda t: _load),
    "load_checkpoint, legacy .pth": (lambda f, t, m: _evil_legacy(t, m), lambda t: _load),
    "backbone weights": (lambda f, t, m: _evil_weights(t, m, False), lambda t: _weights),
    "backbone weights in a state_dict entry": (lambda f, t, m: _evil_weights(t, m, True), lambda t: _weights),
    "backbone weights, legacy non-zip file": (lambda f, t, m: _evil_weights(t, m, False, False), lambda t: _weights),
    "esq run squeeze --resume": (
        lambda f, t, m: _evil_ckpt(f, t, m, "state_dict"),
        lambda t: _cli(t, "squeeze", *SMALL, "--resume", "{path}"),
    ),
    "esq run baseline --resume": (
        lambda f, t, m: _evil_ckpt(f, t, m, "hparams"),
        lambda t: _cli(t, "baseline", *SMALL, "--resume", "{path}"),
    ),
    "esq run baseline --backbone-options weights": (
        lambda f, t, m: _evil_weights(t, m, False),
        lambda t: _cli(t, "baseline", *SMALL, "--backbone-options", "{{weights = '{path}'}}"),
    ),
    "esq run visualize --vq-checkpoint": (
        lambda f, t, m: _evil_ckpt(f, t, m, "state_dict"),
        lambda t: _cli(t, "visualize", "--vq-checkpoint", "{path}", "--baseline-checkpoint", "{path}"),
    ),
    "esq run visualize, legacy .pth": (
        lambda f, t, m: _evil_legacy(t, m),
        lambda t: _cli(t, "visualize", "--vq-checkpoint", "{path}", "--baseline-checkpoint", "{path}"),
    ),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_checkpoint_or_weights_route_runs_code_from_a_pickle(finished, tmp_path, route):
    make, loader = ROUTES[route]
    marker = tmp_path / "the-file-ran-code"
    path = make(finished, tmp_path, marker)
    with pytest.raises(CheckpointError, match=r"pickled Python object \(GLOBAL pathlib\S*touch\)|only tensors"):
        loader(tmp_path)(path)
    assert not marker.exists()


# --- every mistake is one line ------------------------------------------------------------------


def _finished_ckpt(finished: Path, tmp_path: Path) -> str:
    return str(finished / "checkpoints" / "last.ckpt")


def _flipped_ckpt(finished: Path, tmp_path: Path) -> str:
    return str(flip_a_byte(finished / "checkpoints" / "last.ckpt", tmp_path / "flipped.ckpt"))


def _string_hparams(finished: Path, tmp_path: Path) -> str:
    return str(rewritten(finished, tmp_path, lambda c: c.update(hyper_parameters="x")))


def _plain_weights(finished: Path, tmp_path: Path) -> str:
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    return str(path)


# (pipeline and options, what the one line says); "{file}" is made by FILES[the case's name]
BEFORE_THE_RUN = {
    "data path with synthetic": (["baseline", "--data-path", "data"], "data_path: given, but dataset is 'synthetic'"),
    "synthetic size with a folder": (
        ["baseline", "--dataset", "folder", "--data-path", "data", "--synthetic-size", "20"],
        "synthetic_size: given, but dataset is 'folder'",
    ),
    "test fraction with oxford": (
        ["baseline", "--dataset", "oxford_pet", "--data-path", "data", "--test-fraction", "0.2"],
        "test_fraction: given, but dataset 'oxford_pet' takes its test split from annotations/test.txt",
    ),
    "task name without mlflow": (["baseline", "--task-name", "x"], "task_name: given, but only the mlflow logger"),
    "project name without mlflow": (["baseline", "--project-name", "x"], "project_name: given, but only the mlflow"),
    "quantizer options without a quantizer": (
        ["squeeze", "--quantizer", "none", "--codebook-size", "8"],
        "codebook_size: given, but quantizer is 'none'",
    ),
    "devices 0": (["squeeze", "--devices", "0"], "devices = 0: Lightning refuses it"),
    "devices banana": (["baseline", "--devices", "banana"], "devices = 'banana': Lightning refuses it"),
    "precision 99": (["squeeze", "--precision", "99"], "precision = '99': Lightning refuses it"),
    "accelerator banana": (["squeeze", "--accelerator", "banana"], "accelerator = 'banana': Lightning refuses it"),
    "strategy banana": (["baseline", "--strategy", "banana"], "strategy = 'banana': Lightning refuses it"),
    "lr nan": (["squeeze", "--lr", "nan"], "lr must be a positive finite number, got nan"),
    "lr -1": (["baseline", "--lr", "-1"], "lr must be a positive finite number, got -1"),
    "lr inf": (["squeeze", "--lr", "inf"], "lr must be a positive finite number, got inf"),
    "vq loss weight nan": (["squeeze", "--vq-loss-weight", "nan"], "vq_loss_weight must be a finite number"),
    "an unknown loss option": (
        ["squeeze", "--set", "loss_options={banana=1}"],
        "loss_options: unknown option 'banana'",
    ),
    "a negative focal gamma": (
        ["baseline", "--loss-type", "focal", "--set", "loss_options={gamma=-1}"],
        "loss_options: loss: gamma must be a finite number at least 0",
    ),
    "fsq levels of 1": (
        ["squeeze", "--quantizer", "fsq", "--set", "quantizer_options={levels=[1, 1e300]}"],
        "quantizer: fsq: levels[0] must be an integer at least 2",
    ),
    "fsq levels too many codes": (
        ["squeeze", "--quantizer", "fsq", "--set", "quantizer_options={levels=[2, 1099511627776]}"],
        "quantizer: fsq: levels [2, 1099511627776] make a codebook of 2199023255552 codes",
    ),
    "vq codebook too large": (
        ["squeeze", "--set", "codebook_size=1099511627776"],
        "quantizer: vq: codebook_size 1099511627776 would make a codebook",
    ),
    "lfq codebook 1 through --set": (
        ["squeeze", "--quantizer", "lfq", "--set", "codebook_size=1"],
        "quantizer: lfq: codebook_size must be an integer at least 2",
    ),
    "simvq codebook 1": (
        ["squeeze", "--quantizer", "simvq", "--codebook-size", "1"],
        "quantizer: simvq: codebook_size must be an integer at least 2",
    ),
    "rvq codebook 1": (["squeeze", "--quantizer", "rvq", "--codebook-size", "1"], "quantizer: rvq: codebook_size"),
    "demo lr -1": (["demo", "--lr", "-1"], "lr must be a positive finite number, got -1"),
    "demo quantizers twice": (["demo", "--set", 'quantizers=["vq", "vq"]'], "quantizers lists 'vq' more than once"),
    "a feature backbone": (["squeeze", "--model", "resnet50"], "is not a segmentation backbone (it extracts features"),
    "resume a finished run": (
        ["squeeze", "--codebook-size", "16", "--epochs", "1", "--resume", "{file}"],
        "has finished 1 of epochs = 1 (step 3): nothing is left to train; raise epochs above 1",
    ),
    "resume a damaged checkpoint": (["squeeze", "--resume", "{file}"], "flipped.ckpt: damaged: the checksum"),
    "resume hyper_parameters a string": (["squeeze", "--resume", "{file}"], "its hyper_parameters are a str"),
    "resume a weights file": (["baseline", "--resume", "{file}"], "is not a last.ckpt of esq run squeeze/baseline"),
    "resume another quantizer": (
        ["squeeze", "--quantizer", "fsq", "--resume", "{file}"],
        "a checkpoint of quantizer 'vq', but this run uses quantizer 'fsq'",
    ),
    "resume into baseline": (["baseline", "--resume", "{file}"], "a checkpoint of quantizer 'vq', but this run uses"),
}
FILES = {
    "resume a finished run": _finished_ckpt,
    "resume a damaged checkpoint": _flipped_ckpt,
    "resume hyper_parameters a string": _string_hparams,
    "resume a weights file": _plain_weights,
    "resume another quantizer": _finished_ckpt,
    "resume into baseline": _finished_ckpt,
}


@pytest.mark.parametrize("case", sorted(BEFORE_THE_RUN))
def test_a_mistake_is_one_line_naming_it_and_leaves_no_run_directory(finished, tmp_path, case):
    (pipeline, *options), message = BEFORE_THE_RUN[case]
    file = FILES[case](finished, tmp_path) if case in FILES else ""
    options = [option.replace("{file}", file) for option in options]
    result, run = esq_run(tmp_path, pipeline, *TINY, *options, expect=1)
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert message in result.output, result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists() and run is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: accelerator cuda is no mistake here")
def test_the_cuda_accelerator_without_cuda_is_one_line_before_the_run(tmp_path):
    result, run = esq_run(tmp_path, "baseline", *SMALL, "--accelerator", "cuda", expect=1)
    assert "accelerator = 'cuda': Lightning refuses it" in result.output and result.output.count("\n") == 1
    assert run is None


def write_folder(root: Path, broken: str | None = None) -> Path:
    """6 two-class images with masks; ``broken`` names one image whose file is cut in half."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(6):
        mask = np.zeros((24, 24), dtype=np.uint8)
        mask[4 + index : 14 + index, 6:16] = 1
        Image.fromarray(np.stack([mask * 200] * 3, axis=-1)).save(root / "images" / f"im{index}.png")
        Image.fromarray(mask).save(root / "masks" / f"im{index}.png")
    if broken is not None:
        path = root / "images" / broken
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return root


def test_a_bad_image_read_in_a_loader_worker_is_the_same_one_line_as_without_workers(tmp_path):
    data = write_folder(tmp_path / "data", broken="im3.png")
    options = [*SMALL[2:], "--dataset", "folder", "--data-path", str(data), "--num-classes", "2", "--logger", "csv"]
    lines = {}
    for workers in ("0", "2"):
        result, _ = esq_run(tmp_path / workers, "baseline", *options, "--num-workers", workers, expect=1)
        assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
        lines[workers] = result.output.split(" (run log:")[0]
    assert lines["0"] == lines["2"]
    assert "cannot read image" in lines["0"] and "im3.png" in lines["0"]


def test_visualize_checks_both_checkpoints_before_the_run(finished, tmp_path):
    from esq.builtin.pipelines.visualize import VisualizeConfig, check

    good = str(finished / "checkpoints" / "best.ckpt")
    check(VisualizeConfig(vq_checkpoint=good, baseline_checkpoint=good), esq.load_plugins())
    damaged = str(flip_a_byte(finished / "checkpoints" / "best.ckpt", tmp_path / "damaged.ckpt"))
    with pytest.raises(CheckpointError, match=r"damaged\.ckpt: damaged"):
        check(VisualizeConfig(vq_checkpoint=good, baseline_checkpoint=damaged), esq.load_plugins())
    with pytest.raises(
        CheckpointError, match="a checkpoint of backbone 'tiny_cnn', but this run uses backbone 'vit_b_32'"
    ):
        check(VisualizeConfig(vq_checkpoint=good, baseline_checkpoint=good, model="vit"), esq.load_plugins())
    result, run = esq_run(tmp_path, "visualize", "--vq-checkpoint", good, "--baseline-checkpoint", damaged, expect=1)
    assert "damaged.ckpt: damaged" in result.output and run is None and not (tmp_path / "runs").exists()
