"""geometry, rsa, relational, jaccard_knn: references, invariances, ties, blocks, sampling, peers."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from esq import ConfigError, DataError, MetricSpec
from esq.testing import check_metric
from esq_metrics import geometry, jaccard_knn, relational, rsa
from esq_metrics.geometry import Geometry
from esq_metrics.jaccard_knn import JaccardKNN, nearest_neighbours
from esq_metrics.ranks import doubled_average_ranks
from esq_metrics.relational import Relational
from esq_metrics.rsa import RSA

METRICS = {"geometry": Geometry, "rsa": RSA, "relational": Relational, "jaccard_knn": JaccardKNN}
FUNCTIONS = {"geometry": geometry, "rsa": rsa, "relational": relational, "jaccard_knn": jaccard_knn}
RANGES = {"geometry": (-1.0, 1.0), "rsa": (-1.0, 1.0), "relational": (-1.0, 1.0), "jaccard_knn": (0.0, 1.0)}


def features(rows: int, columns: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, columns))


def noisy(x: np.ndarray, level: float, seed: int, columns: int | None = None) -> np.ndarray:
    """A paired view of ``x``: a random linear map to ``columns`` features plus noise."""
    generator = np.random.default_rng(seed)
    mixing = generator.normal(size=(x.shape[1], columns or x.shape[1]))
    mapped = x @ mixing
    return mapped + level * mapped.std() * generator.normal(size=mapped.shape)


# references: quadratic memory, scipy


def geometry_reference(x, y):
    return scipy.stats.spearmanr(scipy.spatial.distance.pdist(x), scipy.spatial.distance.pdist(y)).statistic


def rdm_reference(x):
    return 1.0 - np.corrcoef(x)[np.triu_indices(len(x), 1)]


def rsa_reference(x, y):
    return scipy.stats.spearmanr(rdm_reference(x), rdm_reference(y)).statistic


def relational_reference(x, y):
    distances_x, distances_y = scipy.spatial.distance.pdist(x), scipy.spatial.distance.pdist(y)
    psi_x, psi_y = distances_x / distances_x.mean(), distances_y / distances_y.mean()
    error = np.abs(psi_x - psi_y)
    huber = np.where(error < 1, 0.5 * error**2, error - 0.5).mean()
    return scipy.stats.pearsonr(psi_x, psi_y).statistic, huber


def neighbours_reference(x, k):
    """Cosine k-NN by sorting on (−similarity, index); similarities one pair at a time (elementwise
    products summed over the last axis), so copies of a row have bit-identical similarities."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    similarity = (unit[:, None, :] * unit[None, :, :]).sum(axis=-1)
    result = []
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j != i]
        result.append(sorted(others, key=lambda j: (-similarity[i, j], j))[:k])
    return np.array(result)


def jaccard_reference(x, y, k):
    a, b = neighbours_reference(x, k), neighbours_reference(y, k)
    return np.mean([len(set(p) & set(q)) / len(set(p) | set(q)) for p, q in zip(a, b, strict=True)])


REFERENCES = {
    "geometry": geometry_reference,
    "rsa": rsa_reference,
    "relational": lambda x, y: relational_reference(x, y)[0],
    "jaccard_knn": lambda x, y: jaccard_reference(x, y, 10),
}


@pytest.mark.parametrize("name", METRICS)
def test_each_metric_passes_the_conformance_checks(name):
    spec = MetricSpec(
        name=name,
        factory=METRICS[name],
        summary=f"{name} pairwise similarity",
        kind="similarity",
        higher_is_better=True,
        range=RANGES[name],
    )
    check_metric(spec)


@pytest.mark.parametrize("name", METRICS)
def test_identical_inputs_score_one(name):
    x = features(60, 5, seed=1)
    assert FUNCTIONS[name](x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("seed", [0, 1])
def test_each_metric_equals_its_quadratic_memory_reference(name, seed):
    x = features(80, 6, seed=seed)
    y = noisy(x, 0.5, seed=seed + 10, columns=4)
    assert FUNCTIONS[name](x, y) == pytest.approx(REFERENCES[name](x, y), abs=1e-10)


def test_relational_huber_loss_equals_the_reference():
    x = features(70, 6, seed=2)
    y = noisy(x, 1.0, seed=3)
    assert Relational()(x, y).details["huber"] == pytest.approx(relational_reference(x, y)[1], abs=1e-12)


@pytest.mark.parametrize("name", METRICS)
def test_scores_fall_as_noise_grows(name):
    x = features(150, 8, seed=4)
    levels = [0.05, 0.3, 1.0, 3.0]
    means = [np.mean([FUNCTIONS[name](x, noisy(x, level, seed=s)) for s in range(3)]) for level in levels]
    assert all(a > b for a, b in itertools.pairwise(means)), means


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(0.01, 100.0), shift=st.floats(-10.0, 10.0), seed=st.integers(0, 1000))
def test_geometry_is_invariant_to_scaling_shifting_and_rotating_y(scale, shift, seed):
    x = features(40, 4, seed=seed)
    y = noisy(x, 0.5, seed=seed + 1)
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(4, 4)))
    assert geometry(x, scale * (y @ rotation) + shift) == pytest.approx(geometry(x, y), abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000))
def test_rsa_is_invariant_to_a_positive_affine_change_of_each_row(seed):
    x = features(40, 6, seed=seed)
    y = noisy(x, 0.5, seed=seed + 1)
    generator = np.random.default_rng(seed + 2)
    scales, shifts = generator.uniform(0.1, 10.0, size=(40, 1)), generator.normal(size=(40, 1))
    assert rsa(x, scales * y + shifts) == pytest.approx(rsa(x, y), abs=1e-12)


def test_relational_is_invariant_to_scaling_y():
    x = features(40, 6, seed=5)
    y = noisy(x, 0.5, seed=6)
    assert relational(x, 7.5 * y) == pytest.approx(relational(x, y), abs=1e-12)


@pytest.mark.parametrize(("name", "options"), [("geometry", {}), ("rsa", {}), ("relational", {}), ("jaccard_knn", {})])
def test_tiny_memory_budgets_give_the_same_results(name, options):
    x = features(120, 6, seed=7)
    y = noisy(x, 0.5, seed=8)
    whole = METRICS[name](memory_budget_mib=1024.0)(x, y).value
    for budget in (0.01, 0.05, 0.3):  # blocks of 2, 10 and 65 rows or so
        assert METRICS[name](memory_budget_mib=budget)(x, y).value == pytest.approx(whole, abs=1e-12)


@pytest.mark.parametrize("metric", [Geometry, RSA])
def test_the_sampled_path_is_seeded_reported_and_close_to_the_exact_value(metric):
    x = features(400, 6, seed=9)
    y = noisy(x, 0.5, seed=10)
    exact = metric()(x, y)
    assert not exact.details["sampled"]
    assert exact.details["pairs"] == 400 * 399 // 2
    sampled = metric(max_pairs=20_000, seed=3)(x, y)
    assert sampled.details["sampled"]
    assert sampled.details["pairs"] <= 20_000
    assert sampled.details["seed"] == 3
    assert sampled.value == metric(max_pairs=20_000, seed=3)(x, y).value
    assert sampled.value != metric(max_pairs=20_000, seed=4)(x, y).value
    assert sampled.value == pytest.approx(exact.value, abs=0.03)


def test_the_sampled_path_is_the_exact_statistic_on_a_subset_of_rows():
    x = features(200, 5, seed=11)
    y = noisy(x, 0.5, seed=12)
    result = Geometry(max_pairs=500, seed=0)(x, y)
    rows = np.sort(np.random.default_rng(0).choice(200, result.details["rows"], replace=False))
    assert result.details["rows"] * (result.details["rows"] - 1) // 2 == result.details["pairs"] <= 500
    assert result.value == pytest.approx(geometry_reference(x[rows], y[rows]), abs=1e-10)


@settings(max_examples=20, deadline=None)
@given(values=st.lists(st.integers(0, 5), min_size=1, max_size=60))
def test_doubled_ranks_are_twice_scipys_average_ranks(values):
    values = np.array(values, dtype=float)
    ranks = doubled_average_ranks([values.copy()])
    assert np.array_equal(ranks, 2 * scipy.stats.rankdata(values, method="average"))


def test_quantised_inputs_match_the_reference_with_average_ranks():
    # rounded to one decimal and scaled by 10 (Spearman does not see the scale): integer values,
    # whose squared distances are exact, so ties are ties in pdist and here alike
    x = np.round(10 * features(90, 2, seed=13) / 3)
    y = np.round(10 * noisy(x, 0.5, seed=14) / 6)
    distances = scipy.spatial.distance.pdist(x)
    assert len(np.unique(distances)) < len(distances) / 4  # heavy ties, duplicate rows included
    assert geometry(x, y) == pytest.approx(geometry_reference(x, y), abs=1e-10)
    assert relational(x, y) == pytest.approx(relational_reference(x, y)[0], abs=1e-10)


def balanced_codes(rows: int, seed: int) -> np.ndarray:
    """Rows of eight +1 and eight −1: mean 0 and norm 4, so every correlation is computed exactly."""
    generator = np.random.default_rng(seed)
    return np.array([generator.permutation(np.repeat([1.0, -1.0], 8)) for _ in range(rows)])


def test_rsa_with_tied_and_duplicate_rows_matches_the_reference_with_average_ranks():
    x = balanced_codes(60, seed=15)
    x = np.concatenate([x, x[:20]])  # 20 rows twice
    y = x.copy()
    flips = np.random.default_rng(16).random(len(y)) < 0.5
    y[flips] = y[flips][:, ::-1]  # another code for half the rows
    dissimilarities = rdm_reference(x)
    assert len(np.unique(dissimilarities)) < 20  # a few values, heavily tied
    assert rsa(x, y) == pytest.approx(rsa_reference(x, y), abs=1e-10)


def test_knn_ties_go_to_the_smaller_index_on_duplicated_rows():
    base = features(12, 5, seed=17)
    x = np.concatenate([base, base, base[:4], 2.0 * base[:2]])  # copies, and doubled rows
    neighbours = nearest_neighbours("jaccard_knn", "x", x, 4, 512.0)
    assert np.array_equal(neighbours, neighbours_reference(x, 4))
    # row 0's copies are 12, 24 and 28 (2·row 0 normalises to the same bits): all tie exactly
    assert neighbours[0, :3].tolist() == [12, 24, 28]
    assert neighbours[12, :3].tolist() == [0, 24, 28]
    assert np.array_equal(nearest_neighbours("jaccard_knn", "x", x, 4, 0.001), neighbours)


def test_the_float32_screen_keeps_exact_order_below_float32_resolution():
    # copies of rows 0..59 perturbed by 1e-5: cosine differences of ~1e-11, far below float32's
    # resolution and far above float64's, so the screen must defer to the float64 scores
    generator = np.random.default_rng(28)  # not features' stream: a perturbation, not a rescaling
    base = features(60, 8, seed=27)
    x = np.concatenate([base, base + 1e-5 * generator.normal(size=base.shape), base[:30], np.round(base, 0)])
    x = np.concatenate([x, base[:1] + 1e-5 * generator.normal(size=(40, 8))])  # 41 near-ties with row 0
    for k in (1, 5, 12):
        assert np.array_equal(nearest_neighbours("jaccard_knn", "x", x, k, 512.0), neighbours_reference(x, k))
        assert np.array_equal(nearest_neighbours("jaccard_knn", "x", x, k, 0.01), neighbours_reference(x, k))


def test_jaccard_knn_matches_the_reference_on_duplicated_quantised_rows():
    x = np.round(features(50, 3, seed=18), 1)
    x = np.concatenate([x, x[:15], x[:5]])
    y = np.round(noisy(x, 0.3, seed=19), 1)
    assert jaccard_knn(x, y, k=7) == pytest.approx(jaccard_reference(x, y, 7), abs=1e-12)


def test_rsa_agrees_with_rsatoolbox():
    rsatoolbox = pytest.importorskip("rsatoolbox")
    x = features(40, 12, seed=20)
    y = noisy(x, 0.7, seed=21, columns=9)
    rdms = [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(a), method="correlation") for a in (x, y)]
    peer = float(rsatoolbox.rdm.compare(rdms[0], rdms[1], method="spearman")[0, 0])
    assert rsa(x, y) == pytest.approx(peer, abs=1e-8)


@pytest.mark.parametrize("name", METRICS)
def test_bad_input_is_refused_with_one_line_naming_the_problem(name):
    x = features(20, 4, seed=22)
    with pytest.raises(DataError, match="same number of rows"):
        FUNCTIONS[name](x, x[:-1])
    with pytest.raises(DataError, match="at least 3 rows"):
        FUNCTIONS[name](x[:2], x[:2])
    with pytest.raises(DataError, match="NaN"):
        FUNCTIONS[name](x, np.where(x > 1.5, np.inf, x))


@pytest.mark.parametrize(
    ("name", "y", "message"),
    [
        ("geometry", np.ones((3, 4)), "geometry: every pairwise distance in `y` is the same"),
        ("geometry", np.eye(3, 4), "geometry: every pairwise distance in `y` is the same"),
        ("relational", np.ones((3, 4)), "relational: every pairwise distance in `y` is the same"),
        ("relational", np.eye(3, 4), "relational: every pairwise distance in `y` is the same"),
        ("rsa", np.ones((3, 4)), "rsa: row 0 of `y` is constant"),
    ],
)
def test_features_without_varying_distances_make_the_correlation_undefined(name, y, message):
    with pytest.raises(DataError, match=message):
        FUNCTIONS[name](features(3, 4, seed=23), y)


def test_rsa_names_a_constant_row():
    x = features(20, 4, seed=25)
    y = x.copy()
    y[7] = 2.0
    with pytest.raises(DataError, match="rsa: row 7 of `y` is constant"):
        rsa(x, y)


def test_jaccard_knn_refuses_k_of_at_least_the_number_of_samples():
    x = features(10, 4, seed=26)
    with pytest.raises(ConfigError, match="jaccard_knn: k=10 needs more than 10 samples"):
        jaccard_knn(x, x, k=10)
    with pytest.raises(DataError, match="row 3 of `x` is all zeros"):
        jaccard_knn(np.where(np.arange(10)[:, None] == 3, 0.0, x), x, k=3)


@pytest.mark.parametrize(
    ("metric", "options"),
    [
        (Geometry, {"max_pairs": 2}),
        (RSA, {"seed": -1}),
        (Relational, {"memory_budget_mib": 0}),
        (JaccardKNN, {"k": 0}),
        (JaccardKNN, {"memory_budget_mib": float("nan")}),
    ],
)
def test_bad_options_are_refused(metric, options):
    with pytest.raises(ConfigError):
        metric(**options)


def test_a_sampled_rank_correlation_is_a_warning_once_naming_rows_pairs_and_the_option(caplog):
    generator = np.random.default_rng(0)
    x = generator.normal(size=(30, 3))
    metric = Geometry(max_pairs=100)
    with caplog.at_level(logging.WARNING, logger="esq.metrics"):
        result = metric(x, x + 0.1 * generator.normal(size=x.shape))
        metric(x, x)
    assert result.details["sampled"]
    (record,) = caplog.records
    message = record.getMessage()
    assert "geometry: 30 rows make 435 pairs, more than max_pairs 100" in message
    assert f"a seeded subset of {result.details['rows']} rows" in message
    assert "metric_options.geometry.max_pairs" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="esq.metrics"):
        Geometry()(x, x)
    assert caplog.records == []
