"""The demo job with core's fake plugin (a tiny segmenter, the rounding quantizer, the
mean_distance metric): every model trained and scored in one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from esq.cli.main import make_cli

FAKE = str(Path(__file__).with_name("fake_plugin.py"))
pytest.importorskip("lightning")
SMALL = ["--backbone", "tiny_segmenter", "--quantizers", "rounding", "--metrics", "mean_distance", "--epochs", "1"]
SMALL += ["--synthetic-size", "20", "--image-size", "16", "--tokens-per-image", "4"]


def demo(tmp_path, *options):
    arguments = ["run", "demo", *SMALL, *options, "--plugin", FAKE, "--json", "--output-dir", str(tmp_path)]
    result = CliRunner().invoke(make_cli(), arguments, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run,) = sorted((tmp_path / "demo").iterdir())[-1:]
    return json.loads(result.stdout), run


def test_demo_trains_the_baseline_and_each_quantizer_and_scores_them(tmp_path):
    rows, run = demo(tmp_path, "--set", "quantizer_options.rounding.levels=4")
    values = {(row["model"], row["metric"]): row["value"] for row in rows}
    assert set(values) == {
        (m, s)
        for m in ("baseline", "rounding")
        for s in ("mean_iou", "bits_per_vector", "compression_ratio", "mean_distance")
    }
    assert values["baseline", "mean_distance"] == 0.0  # no quantizer: the features are the originals
    assert values["rounding", "mean_distance"] < 0.0
    assert values["rounding", "bits_per_vector"] == 8.0 and values["baseline", "bits_per_vector"] == 8 * 32
    assert values["rounding", "compression_ratio"] == 8 * 32 / 8.0
    assert (run / "metrics.png").is_file() and (run / "rounding" / "checkpoints" / "best.ckpt").is_file()


def test_demo_is_repeatable_under_a_seed(tmp_path):
    first, _ = demo(tmp_path, "--seed", "3")
    again, _ = demo(tmp_path, "--seed", "3")
    assert first == again


def test_demo_without_quantizers_says_what_to_install(tmp_path):
    result = CliRunner().invoke(make_cli(), ["run", "demo", "--set", "quantizers=[]", "--output-dir", str(tmp_path)])
    assert result.exit_code == 1 and "needs at least one" in result.stderr
