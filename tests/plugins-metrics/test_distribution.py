"""FID, KID, CMMD: conformance, reference formulas, torchmetrics, blocks, seeds, bad input."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import scipy.linalg

import esq
import esq_metrics
from esq import ConfigError, DataError
from esq.testing import check_metric
from esq_metrics.cmmd import CMMD
from esq_metrics.fid import FID, frechet_distance, frechet_distance_in_span, gaussian_statistics
from esq_metrics.kid import KID, kid_subset_indices


def samples(rows: int, columns: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Correlated, non-centred features: a random linear map of normal noise, plus ``shift``."""
    generator = np.random.default_rng(seed)
    mixing = np.random.default_rng(1000 + columns).normal(size=(columns, columns))
    return generator.normal(size=(rows, columns)) @ mixing + shift


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("fid", {}),
        ("fid", {"eps": 0.0}),
        ("kid", {}),
        ("kid", {"subsets": 7, "subset_size": 50, "seed": 3}),
        ("cmmd", {}),
        ("cmmd", {"unbiased": True, "block_size": 17, "sigma": 2.0}),
    ],
)
def test_each_metric_passes_the_conformance_checks(name, options):
    check_metric(esq.registry("metrics").spec(name), **options)


# FID


def fid_by_sqrtm(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root of Σa Σb."""
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    covariance_a, covariance_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = scipy.linalg.sqrtm(covariance_a @ covariance_b).real
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(covariance_a) + np.trace(covariance_b) - 2 * np.trace(cross))


def test_fid_equals_the_formula_with_scipy_sqrtm():
    a, b = samples(300, 6, seed=0), samples(250, 6, seed=1, shift=0.5) * 1.3
    assert relative(esq_metrics.fid(a, b), fid_by_sqrtm(a, b)) < 1e-10


def test_covariances_over_row_and_column_blocks_equal_numpys():
    features = samples(5000, 1100, seed=0, shift=3.0)  # two row blocks, three column blocks
    mean, covariance = gaussian_statistics(features)
    assert np.allclose(mean.numpy(), features.mean(axis=0), rtol=1e-13, atol=0)
    expected = np.cov(features, rowvar=False)
    assert np.abs(covariance.numpy() - expected).max() <= 1e-12 * np.abs(expected).max()


def test_fid_details_split_the_value_into_mean_and_trace_terms():
    a, b = samples(300, 6, seed=0), samples(250, 6, seed=1, shift=0.5)
    result = FID()(a, b)
    assert result.details["mean_term"] == pytest.approx(np.sum((a.mean(0) - b.mean(0)) ** 2), rel=1e-12)
    assert result.details["mean_term"] + result.details["trace_term"] == pytest.approx(result.value, rel=1e-12)
    assert result.details["eps_applied"] is False


def test_fid_of_a_sample_with_itself_is_zero_and_never_negative():
    # rounding leaves the raw sum at about ±1e-14 here, negative for some of these seeds
    values = [esq_metrics.fid(a, a) for a in (samples(300, 6, seed=seed) for seed in range(10))]
    assert all(0.0 <= value < 1e-9 for value in values)


@pytest.mark.parametrize("name", ["fid", "kid", "cmmd"])
def test_read_only_input_such_as_a_memory_mapped_cache_is_accepted_without_warnings(name):
    a, b = samples(100, 6, seed=0), samples(80, 6, seed=1, shift=0.5)
    expected = getattr(esq_metrics, name)(a, b)
    a.setflags(write=False)
    b.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(esq_metrics, name)(a, b) == expected


def test_fid_equals_torchmetrics_on_the_same_features():
    torch = pytest.importorskip("torch")
    fid_module = pytest.importorskip("torchmetrics.image.fid")

    class Features(torch.nn.Identity):
        """torchmetrics' FID with the features themselves in place of Inception."""

        num_features = 6

    a, b = samples(300, 6, seed=0), samples(250, 6, seed=1, shift=0.5) * 1.3
    peer = fid_module.FrechetInceptionDistance(feature=Features())
    peer.update(torch.from_numpy(a), real=True)
    peer.update(torch.from_numpy(b), real=False)
    assert relative(esq_metrics.fid(a, b), float(peer.compute())) < 1e-8


def test_fid_with_fewer_samples_than_dimensions_warns_and_says_what_to_do(caplog):
    a, b = samples(5, 8, seed=0), samples(40, 8, seed=1, shift=0.5)
    with caplog.at_level(logging.WARNING, logger="esq.metrics"):
        result = FID()(a, b)
    warning = result.details["warning"]
    assert "`reference` has 5 samples for 8 dimensions" in warning
    assert "rank at most 4" in warning and "PCA to fewer than 5 components" in warning
    assert warning in caplog.messages
    assert result.details["eps_applied"] is True
    assert np.isfinite(result.value)


def sqrtm_fid(a, b, eps):
    """The textbook formula with scipy's sqrtm, ``eps`` added to both covariances."""
    offset = eps * np.eye(a.shape[1])
    covariance_a, covariance_b = np.cov(a, rowvar=False) + offset, np.cov(b, rowvar=False) + offset
    return (
        np.sum((a.mean(0) - b.mean(0)) ** 2)
        + np.trace(covariance_a)
        + np.trace(covariance_b)
        - 2 * np.trace(scipy.linalg.sqrtm(covariance_a @ covariance_b).real)
    )


def nuclear_fid(a, b):
    """Without eps: tr (√Σa Σb √Σa)^½ is the nuclear norm of Xa Xbᵀ / √((na − 1)(nb − 1))."""
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    cross = np.linalg.norm(centred_a @ centred_b.T, "nuc") / np.sqrt((len(a) - 1) * (len(b) - 1))
    return (
        np.sum((a.mean(0) - b.mean(0)) ** 2)
        + np.trace(np.cov(a, rowvar=False))
        + np.trace(np.cov(b, rowvar=False))
        - 2 * cross
    )


def test_fid_adds_eps_to_both_diagonals_when_a_covariance_is_singular():
    a, b = samples(5, 8, seed=0), samples(40, 8, seed=1, shift=0.5)
    assert relative(esq_metrics.fid(a, b, eps=1e-3), sqrtm_fid(a, b, 1e-3)) < 1e-10


def test_fid_without_eps_is_exact_for_singular_covariances():
    a, b = samples(5, 8, seed=0), samples(6, 8, seed=1, shift=0.5)
    result = FID(eps=0.0)(a, b)
    assert result.details["eps_applied"] is False
    assert relative(result.value, nuclear_fid(a, b)) < 1e-7


def test_fid_with_fewer_rows_than_dimensions_in_total_works_in_their_span():
    """n + m ≤ d: FID is computed in the span of the centred rows, equal to the d-dimensional
    route with eps and to scipy's sqrtm formula."""
    a, b = samples(12, 64, seed=0), samples(9, 64, seed=1, shift=0.5)
    assert relative(esq_metrics.fid(a, b, eps=1e-3), sqrtm_fid(a, b, 1e-3)) < 1e-10
    read_only = a.copy()
    read_only.flags.writeable = False  # a memory-mapped cache chunk: no torch warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        esq_metrics.fid(read_only, b)
    whole = frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b), eps=1e-6)
    in_span = frechet_distance_in_span(a, b, eps=1e-6)
    assert relative(in_span.value, whole.value) < 1e-9 and in_span.details["eps_applied"] is True
    assert FID()(a, b).value == in_span.value


def test_fid_in_the_span_without_eps_is_the_nuclear_norm_formula():
    a, b = samples(7, 40, seed=2), samples(5, 40, seed=3, shift=0.2)
    result = FID(eps=0.0)(a, b)
    assert result.details["eps_applied"] is False and relative(result.value, nuclear_fid(a, b)) < 1e-10


def test_fid_detects_a_singular_second_covariance_alone():
    a, b = samples(300, 6, seed=0), samples(250, 6, seed=1)
    b[:, 2] = 3.0  # a constant feature: Σb is singular, Σa is not
    assert FID()(a, b).details["eps_applied"] is True
    assert FID()(b, a).details["eps_applied"] is True


def test_frechet_distance_of_two_gaussians_in_closed_form():
    # N(0, I) and N(1, 4I) in 3-D: 3·1 + 3 + 12 − 2·tr(2I) = 6
    assert frechet_distance(np.zeros(3), np.eye(3), np.ones(3), 4 * np.eye(3)).value == pytest.approx(6.0, rel=1e-14)


@pytest.mark.parametrize("eps", [-1.0, float("nan"), "small", True])
def test_fid_rejects_a_bad_eps(eps):
    with pytest.raises(ConfigError, match="fid: eps"):
        FID(eps=eps)


# KID


def kid_by_loops(a: np.ndarray, b: np.ndarray, subsets: int, subset_size: int, seed: int) -> tuple[float, float]:
    """Unbiased MMD² with k(x, y) = (xᵀy/d + 1)³, one kernel value at a time."""

    def kernel(x, y):
        return (x @ y / len(x) + 1.0) ** 3

    estimates = []
    for rows_a, rows_b in kid_subset_indices(len(a), len(b), subsets, subset_size, seed):
        x, y = a[rows_a], b[rows_b]
        m = len(x)
        within = sum(kernel(x[i], x[j]) + kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
        across = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m))
        estimates.append(within / (m * (m - 1)) - 2 * across / (m * m))
    return float(np.mean(estimates)), float(np.std(estimates))


def test_kid_equals_the_unbiased_estimator_computed_pair_by_pair():
    a, b = samples(40, 5, seed=0), samples(30, 5, seed=1, shift=0.3)
    result = KID(subsets=4, subset_size=12, seed=5)(a, b)
    value, std = kid_by_loops(a, b, subsets=4, subset_size=12, seed=5)
    assert relative(result.value, value) < 1e-10
    assert relative(result.details["std"], std) < 1e-10


def test_kid_subsets_are_drawn_without_replacement_and_capped_at_the_smaller_sample():
    indices = kid_subset_indices(40, 30, subsets=3, subset_size=100, seed=0)
    assert all(len(set(a)) == len(set(b)) == 30 for a, b in indices)
    assert KID(subsets=3, subset_size=100)(samples(40, 5, 0), samples(30, 5, 1)).details["subset_size"] == 30


def test_kid_draws_the_same_subsets_for_the_same_seed_and_sizes():
    first, again = kid_subset_indices(500, 400, 5, 50, seed=7), kid_subset_indices(500, 400, 5, 50, seed=7)
    assert all(
        np.array_equal(x, y) for pair, other in zip(first, again, strict=True) for x, y in zip(pair, other, strict=True)
    )
    different = kid_subset_indices(500, 400, 5, 50, seed=8)
    assert not np.array_equal(first[0][0], different[0][0])


def test_kid_is_deterministic_under_a_seed_and_changes_with_it():
    a, b = samples(300, 5, seed=0), samples(300, 5, seed=1, shift=0.3)
    value = esq_metrics.kid(a, b, subsets=10, subset_size=50, seed=1)
    assert esq_metrics.kid(a, b, subsets=10, subset_size=50, seed=1) == value
    assert esq_metrics.kid(a, b, subsets=10, subset_size=50, seed=2) != value


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"subsets": 0}, "subsets must be an integer.* at least 1"),
        ({"subset_size": 1}, "subset_size must be an integer.* at least 2"),
        ({"subset_size": 10.5}, "subset_size"),
        ({"seed": -1}, "seed must be an integer.* at least 0"),
    ],
)
def test_kid_rejects_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        KID(**options)


# CMMD


def cmmd_full_matrices(a: np.ndarray, b: np.ndarray, unbiased: bool, sigma: float = 10.0) -> float:
    """The reference code's computation: whole kernel matrices from squared norms, exp, means."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)

    def kernel(x, y):
        squared = -2 * x @ y.T + np.sum(x * x, axis=1)[:, None] + np.sum(y * y, axis=1)[None, :]
        return np.exp(-squared / (2 * sigma**2))

    k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
    if unbiased:
        n, m = len(a), len(b)
        within = (k_aa.sum() - np.trace(k_aa)) / (n * (n - 1)) + (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
        return float(1000 * (within - 2 * k_ab.mean()))
    return float(1000 * (k_aa.mean() + k_bb.mean() - 2 * k_ab.mean()))


@pytest.mark.parametrize("unbiased", [False, True])
def test_cmmd_equals_the_full_matrix_formula(unbiased):
    a, b = samples(30, 6, seed=0), samples(25, 6, seed=1, shift=1.0)
    assert relative(esq_metrics.cmmd(a, b, unbiased=unbiased), cmmd_full_matrices(a, b, unbiased)) < 1e-10


def test_cmmd_default_is_the_biased_estimator_of_the_reference_code():
    a, b = samples(30, 6, seed=0), samples(25, 6, seed=1, shift=1.0)
    assert relative(esq_metrics.cmmd(a, b), cmmd_full_matrices(a, b, unbiased=True)) > 1e-6
    assert CMMD()(a, b).details["estimator"].startswith("biased")


def test_cmmd_with_another_sigma_equals_the_formula():
    a, b = samples(30, 6, seed=0), samples(25, 6, seed=1, shift=1.0)
    assert relative(esq_metrics.cmmd(a, b, sigma=0.7), cmmd_full_matrices(a, b, False, sigma=0.7)) < 1e-10


@pytest.mark.parametrize("unbiased", [False, True])
def test_cmmd_in_small_blocks_equals_one_block(unbiased):
    a, b = samples(50, 6, seed=0), samples(41, 6, seed=1, shift=1.0)
    whole = CMMD(unbiased=unbiased, block_size=1000)(a, b).value
    for block_size in (1, 7, 16):
        assert relative(CMMD(unbiased=unbiased, block_size=block_size)(a, b).value, whole) < 1e-12


def test_cmmd_normalises_each_embedding():
    a, b = samples(30, 6, seed=0), samples(25, 6, seed=1, shift=1.0)
    scales = np.random.default_rng(0).uniform(0.1, 10.0, size=(30, 1))
    assert relative(esq_metrics.cmmd(a * scales, 3 * b), esq_metrics.cmmd(a, b)) < 1e-12


def test_cmmd_rejects_an_all_zero_embedding():
    a, b = samples(30, 6, seed=0), samples(25, 6, seed=1)
    b[4] = 0.0
    with pytest.raises(DataError, match="row 4 of `other` is all zeros"):
        esq_metrics.cmmd(a, b)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"block_size": 0}, "block_size must be an integer.* at least 1"),
        ({"unbiased": "yes"}, "unbiased must be true or false"),
        ({"sigma": 0.0}, "sigma must be a finite number greater than 0"),
    ],
)
def test_cmmd_rejects_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        CMMD(**options)


# bad input and the functional forms, all three


@pytest.mark.parametrize("name", ["fid", "kid", "cmmd"])
def test_bad_input_is_a_data_error_naming_the_argument(name):
    metric = getattr(esq_metrics, name)
    a, b = samples(30, 6, seed=0), samples(25, 6, seed=1)
    with_nan = b.copy()
    with_nan[3, 1] = np.nan
    with pytest.raises(DataError, match="`other` contains NaN"):
        metric(a, with_nan)
    with pytest.raises(DataError, match="same number of columns, got 6 and 5"):
        metric(a, b[:, :5])
    with pytest.raises(DataError, match="`reference` needs at least 2 rows"):
        metric(a[:1], b)


@pytest.mark.parametrize("name", ["fid", "kid", "cmmd"])
def test_the_plain_function_returns_a_float_equal_to_the_components_value(name):
    a, b = samples(60, 4, seed=0), samples(50, 4, seed=1, shift=0.5)
    value = getattr(esq_metrics, name)(a, b)
    assert type(value) is float
    assert value == esq.registry("metrics").create(name)(a, b).value


def test_kid_says_once_when_subset_size_is_more_than_the_samples_hold(caplog):
    generator = np.random.default_rng(0)
    reference, other = generator.normal(size=(40, 4)), generator.normal(size=(30, 4))
    kid = KID(subsets=5, subset_size=100)
    with caplog.at_level(logging.WARNING, logger="esq.metrics"):
        kid(reference, other)
        kid(reference, other + 1.0)
    (record,) = caplog.records
    assert "kid: subset_size 100 is more than the samples hold (N=40, M=30)" in record.getMessage()
    assert "subset_size=30 or fewer" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="esq.metrics"):
        KID(subsets=5, subset_size=30)(reference, other)
    assert caplog.records == []
