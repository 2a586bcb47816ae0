"""Spearman's ρ against scipy, and the plot of one configuration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from esq.builtin.pipelines.degradation.monotonicity import (
    configuration_figure,
    heatmap_figure,
    level_label,
    plot_configuration,
    plot_heatmap,
    spearman,
)


def average_ranks(values):
    """The plain formula: 1 + the values below, + half of the others equal to it."""
    values = np.asarray(values, dtype=float)
    return np.array([1 + (values < v).sum() + ((values == v).sum() - 1) / 2 for v in values])


def test_average_ranks_reference_shares_the_rank_on_ties():
    assert average_ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]


@pytest.mark.parametrize("seed", range(5))
def test_spearman_is_pearson_of_average_ranks_with_and_without_ties(seed):
    generator = np.random.default_rng(seed)
    levels = np.sort(generator.choice(20, size=8, replace=False)).astype(float)
    for scores in (generator.integers(0, 4, size=8).astype(float), generator.normal(size=8)):  # ties, none
        expected = np.corrcoef(average_ranks(levels), average_ranks(scores))[0, 1]
        assert spearman(levels, scores) == pytest.approx(expected, abs=1e-12)


def test_monotone_scores_give_one_and_reversed_give_minus_one():
    assert spearman([1, 2, 3, 4], [0.1, 0.5, 0.7, 9.0]) == 1.0
    assert spearman([1, 2, 3, 4], [9.0, 0.7, 0.5, 0.1]) == -1.0


def test_a_constant_score_orders_nothing_and_a_nan_score_is_nan():
    assert spearman([1, 2, 3], [2.0, 2.0, 2.0]) == 0.0
    assert math.isnan(spearman([1, 2, 3], [1.0, float("nan"), 3.0]))


def test_spearman_needs_two_equally_long_sequences():
    with pytest.raises(ValueError, match="at least 2"):
        spearman([1], [1.0])
    with pytest.raises(ValueError, match="equally long"):
        spearman([1, 2, 3], [1.0, 2.0])


def test_plot_writes_one_png_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    curves = {
        "blur": {"levels": [1, 2, 3], "scores": [0.1, 0.2, 0.4], "monotonicity": 1.0},
        "noise": {"levels": [5, 10], "scores": [0.3, 0.2], "monotonicity": -1.0},
    }
    path = plot_configuration(tmp_path / "monotonicity_top1.png", "#1 demo", curves, clean=0.05)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["monotonicity_top1.png"]


def test_a_level_is_labelled_by_its_degradations_name_and_unit_else_level():
    class Declared:
        level_name, level_unit = "warp", "px"

    class NameOnly:
        level_name = "quality"

    assert (level_label(Declared()), level_label(NameOnly()), level_label(object())) == (
        "warp (px)",
        "quality",
        "level",
    )


def test_each_panel_names_its_level_on_x_and_the_metric_on_y():
    pytest.importorskip("matplotlib")
    curves = {
        "blur": {"levels": [1, 2], "scores": [0.1, 0.2], "monotonicity": 1.0, "level_label": "blur σ (px)"},
        "custom": {"levels": [1, 2], "scores": [0.2, 0.1], "monotonicity": -1.0},
    }
    figure = configuration_figure("#1", curves, clean=0.05, metric="fid vs 40 reference images")
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_xlabel() for axis in visible] == ["blur σ (px)", "level"]
    assert {axis.get_ylabel() for axis in visible} == {"fid vs 40 reference images"}


def test_the_heatmap_has_a_row_per_configuration_a_column_per_degradation_and_every_value(tmp_path):
    pytest.importorskip("matplotlib")
    configurations, degradations = ["#1 a", "#2 b", "#3 c"], ["blur", "noise", "mean ρ"]
    values = [[1.0, 0.5, 0.75], [0.2, math.nan, 0.2], [-1.0, -0.5, -0.75]]
    figure = heatmap_figure("ρ", configurations, degradations, values)
    (axis, _colorbar) = figure.axes
    assert [label.get_text() for label in axis.get_yticklabels()] == configurations
    assert [label.get_text() for label in axis.get_xticklabels()] == degradations
    assert [text.get_text() for text in axis.texts] == [
        "1.00",
        "0.50",
        "0.75",
        "0.20",
        "n/a",
        "0.20",
        "-1.00",
        "-0.50",
        "-0.75",
    ]
    path = plot_heatmap(tmp_path / "monotonicity_heatmap.png", "ρ", configurations, degradations, values)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_the_ranking_says_how_many_configurations_it_hides_and_the_heatmap_how_many_it_leaves_out(tmp_path):
    pytest.importorskip("matplotlib")
    import logging

    from esq import RunContext
    from esq.builtin.pipelines.degradation.pipeline import DegradationConfig, MetricEntry
    from esq.builtin.pipelines.degradation.scoring import HEATMAP_ROWS, _record, summarise

    levels = {"blur": [1, 2, 3], "noise": [5, 10, 20]}
    rng = np.random.default_rng(0)
    records = []
    for index in range(HEATMAP_ROWS + 5):
        curves = {
            name: {"levels": values, "scores": list(rng.random(3)), "monotonicity": float(rng.uniform(-1, 1))}
            for name, values in levels.items()
        }
        base = {"backbone": "tiny_cnn", "layers": f"block{index}", "transform": "raw"}
        records.append(_record(base, MetricEntry("fid", "-", {}), "ok", 0.1, levels, curves))
    base = {"backbone": "tiny_cnn", "layers": "wide", "transform": "gram"}
    records += [_record(base, MetricEntry(metric, "-", {}), "skipped: too wide", None, levels, {}) for metric in "ab"]
    config = DegradationConfig(mode="quick", backbones=["tiny_cnn"], top_k=0, ranking_rows=7)
    results = summarise(config, records, RunContext(tmp_path, logging.getLogger("esq_tests.ranking"), None))
    *shown, last = results.table
    assert len(shown) == 7 and [row["rank"] for row in shown] == list(range(1, 8))
    more = len(records) - 2 - 7
    assert last == {
        "rank": "…",
        "configuration": f"{more} more not shown (ranking_rows = 7); all in results.csv; "
        "2 not scored (results.csv says why)",
    }
    assert results.summary["plots"] == ["monotonicity_heatmap.png"] and results.summary["ranking_shows"] == 7
    assert (tmp_path / "monotonicity_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
