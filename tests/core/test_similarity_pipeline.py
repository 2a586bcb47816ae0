"""``esq run similarity`` with core's fake plugin: checkpoints trained here (tiny segmenter,
rounding quantizer) and feature files in every format, scored by mean_distance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from esq.cli.main import make_cli

FAKE = str(Path(__file__).with_name("fake_plugin.py"))
torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
TRAIN = ["--model", "tiny_segmenter", "--epochs", "1", "--synthetic-size", "20", "--image-size", "16"]


def esq(tmp_path: Path, *arguments: str, expect: int = 0):
    result = CliRunner().invoke(make_cli(), [*arguments, "--plugin", FAKE, "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == expect, result.output
    return result


def last_run(tmp_path: Path, pipeline: str) -> Path:
    return sorted((tmp_path / "runs" / pipeline).iterdir())[-1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A folder with a baseline and a rounding checkpoint, as a user would gather them."""
    root = tmp_path_factory.mktemp("checkpoints")
    folder = root / "models"
    folder.mkdir()
    for pipeline, extra in (("baseline", []), ("squeeze", ["--quantizer", "rounding"])):
        esq(root, "run", pipeline, *TRAIN, *extra)
        (last_run(root, pipeline) / "checkpoints" / "best.ckpt").rename(folder / f"{pipeline}.ckpt")
    return folder


def test_every_checkpoint_is_scored_and_the_previous_json_is_written(checkpoints, tmp_path):
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "--json"]
    result = esq(tmp_path, "run", "similarity", *options)
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert rows["baseline"]["value"] == 0.0 and rows["squeeze"]["value"] < 0.0
    run = last_run(tmp_path, "similarity")
    assert json.loads((run / "similarity.json").read_text()) == {
        "baseline": {"mean_distance": 0.0},
        "squeeze": {"mean_distance": rows["squeeze"]["value"]},
    }
    assert (run / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((run / "results.json").read_text())["summary"]["models"]
    assert summary["squeeze"]["quantizer"] == "rounding" and summary["squeeze"]["samples"] == 2


def test_token_pooling_pairs_the_same_positions(checkpoints, tmp_path):
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "--pooling", "tokens"]
    result = esq(tmp_path, "run", "similarity", *options, "--tokens-per-image", "5", "--split", "trainval", "--json")
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert rows["baseline"]["value"] == 0.0 and rows["baseline"]["samples"] == 5 * 18


def write(path: Path, array: np.ndarray) -> Path:
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({"features": array}, path)
    else:
        torch.save({"features": torch.from_numpy(array)}, path)
    return path


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors"])
def test_two_feature_files_with_bootstrap_intervals(tmp_path, suffix):
    generator = np.random.default_rng(0)
    a = generator.normal(size=(60, 5)).astype(np.float32)
    b = a + 0.1 * generator.normal(size=a.shape).astype(np.float32)
    files = [
        "--features-a",
        str(write(tmp_path / f"a{suffix}", a)),
        "--features-b",
        str(write(tmp_path / f"b{suffix}", b)),
    ]
    result = esq(tmp_path, "run", "similarity", *files, "--metrics", "mean_distance", "--bootstrap", "50", "--json")
    (row,) = json.loads(result.stdout)
    expected = -float(np.linalg.norm(a.astype(np.float64) - b, axis=1).mean())
    assert row["value"] == pytest.approx(expected, rel=1e-6)
    assert row["ci_low"] < row["value"] < row["ci_high"]
    table = esq(tmp_path, "run", "similarity", *files, "--metrics", "mean_distance", "--bootstrap", "50").stdout
    assert f"{row['value']:.4g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]" in table


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--features-a", "missing.npy", "--features-b", "missing.npy"], "features_a missing.npy: no such file"),
        (["--features-a", "a.npy"], "features_a and features_b go together"),
        ([], "give one of checkpoints_dir, features_a and features_b, or results"),
        (["--checkpoints-dir", "nowhere"], "checkpoints_dir nowhere: no such folder"),
        (["--features-a", "a.txt", "--features-b", "a.txt"], "unknown format"),
    ],
)
def test_bad_input_is_one_line(tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("1 2 3")
    result = esq(tmp_path, "run", "similarity", *options, "--metrics", "mean_distance", expect=1)
    assert result.output.startswith("Error: ") and message in result.output and result.output.count("\n") == 1


def test_a_previous_json_is_drawn_and_tabulated_again(tmp_path):
    previous = tmp_path / "old.json"
    previous.write_text(json.dumps({"vq": {"cka": 0.9, "rsa": 0.8}, "fsq": {"cka": 0.95, "rsa": 0.85}}))
    result = esq(tmp_path, "run", "similarity", "--results", str(previous), "--visualize", "plots.png", "--json")
    assert {(row["model"], row["metric"], row["value"]) for row in json.loads(result.stdout)} == {
        ("vq", "cka", 0.9),
        ("vq", "rsa", 0.8),
        ("fsq", "cka", 0.95),
        ("fsq", "rsa", 0.85),
    }
    assert (last_run(tmp_path, "similarity") / "plots.png").is_file()


def test_the_previous_metrics_spelling_takes_several_values(checkpoints, tmp_path):
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "mean_shift", "--json"]
    result = esq(tmp_path, "run", "similarity", *options, expect=1)
    assert "metrics: 'mean_shift' is a distribution metric, not a similarity metric" in result.output
