"""The provisional demo pipeline: installed quantizers × similarity metrics on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from esq.cli.main import make_cli
from esq.pipelines.demo import synthetic_embeddings

FAKE = str(Path(__file__).with_name("fake_plugin.py"))
pytest.importorskip("torch")


def test_synthetic_embeddings_are_seeded():
    first, again, other = (synthetic_embeddings(50, 8, 3, seed) for seed in (1, 1, 2))
    assert first.shape == (50, 8) and (first == again).all() and not (first == other).all()


def demo_rows(tmp_path, *settings):
    """``esq run demo`` with the fake plugin on 128 samples; the rows as JSON."""
    args = ["run", "demo", "--plugin", FAKE, "--json", "--output-dir", str(tmp_path), "--set", "samples=128"]
    result = CliRunner().invoke(make_cli(), [*args, *settings], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_demo_scores_each_quantizer_with_each_similarity_metric(tmp_path):
    rows = demo_rows(
        tmp_path, "--set", "steps=20", "--set", "quantizers=rounding", "--set", "quantizer_options.rounding.levels=4"
    )
    rows = [row for row in rows if row["metric"] == "mean_distance"]
    assert [row["quantizer"] for row in rows] == ["rounding"]
    (row,) = rows
    assert row["bits_per_vector"] == 8.0 and row["compression_ratio"] == 64 * 32 / 8.0


def test_demo_is_repeatable_under_a_seed_and_training_helps(tmp_path):
    trained = demo_rows(
        tmp_path, "--set", "metrics=mean_distance", "--seed", "1", "--set", "steps=200", "--set", "learning_rate=0.01"
    )
    again = demo_rows(
        tmp_path, "--set", "metrics=mean_distance", "--seed", "1", "--set", "steps=200", "--set", "learning_rate=0.01"
    )
    untrained = demo_rows(tmp_path, "--set", "metrics=mean_distance", "--seed", "1", "--set", "steps=0")
    assert trained == again
    rounding = {
        name: next(r["value"] for r in rows if r["quantizer"] == "rounding")
        for name, rows in (("trained", trained), ("untrained", untrained))
    }
    assert rounding["trained"] > rounding["untrained"]  # minus the mean distance: higher is closer


def test_demo_without_quantizers_says_what_to_install(tmp_path):
    result = CliRunner().invoke(make_cli(), ["run", "demo", "--set", "quantizers=[]", "--output-dir", str(tmp_path)])
    assert result.exit_code == 1 and "needs at least one quantizer" in result.stderr
