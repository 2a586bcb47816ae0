"""The demo job with core's fake plugin (a tiny segmenter, the rounding quantizer, the
mean_distance metric): every model trained and scored in one table."""

from __future__ import annotations

import csv
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


@pytest.fixture(scope="module")
def levels_4(tmp_path_factory):
    """One demo run shared by the tests that read its rows and files."""
    return demo(tmp_path_factory.mktemp("demo"), "--set", "quantizer_options.rounding.levels=4")


def test_demo_trains_the_baseline_and_each_quantizer_and_scores_them(levels_4):
    rows, run = levels_4
    values = {(row["model"], row["metric"]): row["value"] for row in rows if row["class"] is None}
    assert set(values) == {
        (m, s)
        for m in ("baseline", "rounding")
        for s in ("mean_iou", "pixel_accuracy", "sample_iou_mean", "sample_iou_median", "mean_distance")
    }
    assert values["baseline", "mean_distance"] == 0.0  # no quantizer: the features are the originals
    assert values["rounding", "mean_distance"] < 0.0
    assert (run / "metrics.png").is_file() and (run / "rounding" / "checkpoints" / "best.ckpt").is_file()


def test_every_demo_row_says_which_model_and_setting_it_is_about(levels_4):
    rows, run = levels_4
    assert all(list(row)[:7] == ["model", "backbone", "quantizer", "metric", "class", "level", "value"] for row in rows)
    rounding = [row for row in rows if row["model"] == "rounding"]
    assert {row["bits_per_vector"] for row in rounding} == {8.0} and {row["levels"] for row in rounding} == {4}
    assert {row["compression_ratio"] for row in rounding} == {8 * 32 / 8.0}
    assert {row["bits_per_vector"] for row in rows if row["model"] == "baseline"} == {8 * 32}
    assert {(row["seed"], row["epochs"], row["split"], row["dataset"]) for row in rows} == {(0, 1, "test", "synthetic")}
    classes = [row["class"] for row in rounding if row["metric"] == "iou"]
    assert classes and len(set(classes)) == len(classes)
    summary = json.loads((run / "results.json").read_text())["summary"]
    assert "tokens pooling" in summary["figure_title"]
    assert summary["figure_title"].endswith(f"N = {summary['test_rows_for_metrics']}")
    assert summary["confusion_matrices"]["rounding"] == "rounding/confusion_matrix.csv"
    with open(run / summary["confusion_matrices"]["rounding"], newline="") as handle:
        assert next(csv.reader(handle))[1:] == classes


def test_demo_is_repeatable_under_a_seed(tmp_path):
    first, _ = demo(tmp_path, "--seed", "3")
    again, _ = demo(tmp_path, "--seed", "3")
    assert first == again


def test_demo_without_quantizers_says_what_to_install(tmp_path):
    result = CliRunner().invoke(make_cli(), ["run", "demo", "--set", "quantizers=[]", "--output-dir", str(tmp_path)])
    assert result.exit_code == 1 and "needs at least one" in result.stderr
