"""Spearman's ρ against scipy, and the plot of one configuration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from esq.builtin.pipelines.degradation.monotonicity import plot_configuration, spearman


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
