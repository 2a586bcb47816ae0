"""GMM Mahalanobis, GMM NLL, KDE NLL: conformance, hand computations, options, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

import esq
import esq_metrics
from esq import ConfigError, DataError
from esq.testing import check_metric
from esq_metrics.gmm import GMMNLL, GMMMahalanobis, squared_mahalanobis
from esq_metrics.kde import KDENLL

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def clusters(rows: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Three elongated, unequal clusters in 3-D."""
    generator = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 1.0, -2.0], [-3.0, 5.0, 4.0]])
    shapes = [np.diag([1.0, 0.3, 2.0]), np.array([[1.0, 0.8, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.2]]), 0.5 * np.eye(3)]
    labels = generator.choice(3, size=rows, p=[0.5, 0.3, 0.2])
    noise = generator.normal(size=(rows, 3))
    return np.stack([centres[k] + noise[i] @ shapes[k] for i, k in enumerate(labels)]) + shift


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("gmm_mahalanobis", {}),
        ("gmm_mahalanobis", {"n_components": 2, "covariance_type": "tied", "seed": 1}),
        ("gmm_nll", {}),
        ("gmm_nll", {"n_components": 3, "covariance_type": "spherical", "reg_covar": 1e-4, "max_iter": 50}),
        ("kde_nll", {}),
        ("kde_nll", {"bandwidth": 0.8}),
        ("kde_nll", {"bandwidth": "silverman"}),
    ],
)
def test_each_metric_passes_the_conformance_checks(name, options):
    check_metric(esq.registry("metrics").spec(name), **options)


def full_covariances(mixture: GaussianMixture) -> list[np.ndarray]:
    """Each component's d×d covariance, from ``covariances_`` whatever the covariance_type."""
    k, d = mixture.means_.shape
    covariances = mixture.covariances_
    return {
        "full": lambda: list(covariances),
        "tied": lambda: [covariances] * k,
        "diag": lambda: [np.diag(row) for row in covariances],
        "spherical": lambda: [value * np.eye(d) for value in covariances],
    }[mixture.covariance_type]()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_mahalanobis_equals_a_hand_computation(covariance_type):
    reference, other = clusters(400, seed=0), clusters(60, seed=1, shift=0.7)
    metric = GMMMahalanobis(n_components=3, covariance_type=covariance_type)
    mixture = metric.fit(reference)
    expected = np.mean(
        [
            min(
                np.sqrt((x - mean) @ np.linalg.solve(covariance, x - mean))
                for mean, covariance in zip(mixture.means_, full_covariances(mixture), strict=True)
            )
            for x in other
        ]
    )
    assert metric(reference, other).value == pytest.approx(expected, rel=1e-9)


def test_gmm_mahalanobis_takes_the_closest_component_not_the_most_probable():
    # 1-D: a narrow component (σ 0.1 at 0) and a wide one (σ 5 at 5). Two narrow σ from the narrow
    # mean, that component is the more probable one, but the wide one is closer in Mahalanobis
    # distance (about 1 of its σ)
    generator = np.random.default_rng(0)
    reference = np.concatenate([generator.normal(0.0, 0.1, size=(500, 1)), generator.normal(5.0, 5.0, (500, 1))])
    metric = GMMMahalanobis(n_components=2, covariance_type="diag")
    mixture = metric.fit(reference)
    narrow = int(np.argmin(mixture.covariances_[:, 0]))
    point = mixture.means_[narrow] + 2.0 * np.sqrt(mixture.covariances_[narrow])
    assert mixture.predict(point[None, :])[0] == narrow
    wide = 1 - narrow
    expected = abs(point[0] - mixture.means_[wide, 0]) / np.sqrt(mixture.covariances_[wide, 0])
    assert expected < 1.5
    assert metric(reference, np.stack([point, point])).value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_nll_is_scikit_learns_mean_negative_log_likelihood(covariance_type):
    reference, other = clusters(400, seed=0), clusters(60, seed=1, shift=0.7)
    mixture = GaussianMixture(n_components=3, covariance_type=covariance_type, random_state=4).fit(reference)
    value = esq_metrics.gmm_nll(reference, other, n_components=3, covariance_type=covariance_type, seed=4)
    assert value == pytest.approx(-mixture.score_samples(other).mean(), rel=1e-12)


@pytest.mark.parametrize("name", ["gmm_mahalanobis", "gmm_nll"])
def test_the_seed_is_the_mixtures_random_state(name):
    # five components on structureless data: EM ends where its initialisation puts it
    reference, other = np.random.default_rng(0).normal(size=(200, 4)), np.random.default_rng(1).normal(size=(50, 4))
    values = {seed: getattr(esq_metrics, name)(reference, other, seed=seed) for seed in (0, 1)}
    assert values[0] != values[1]
    for seed, value in values.items():
        mixture = GaussianMixture(n_components=5, random_state=seed).fit(reference)
        if name == "gmm_nll":
            assert value == -mixture.score_samples(other).mean()
        else:
            assert value == np.sqrt(squared_mahalanobis(mixture, other).min(axis=1)).mean()


def test_gmm_nll_of_a_standard_normal_is_its_entropy():
    reference = np.random.default_rng(0).normal(size=(20000, 2))
    value = esq_metrics.gmm_nll(reference, reference, n_components=1)
    assert value == pytest.approx(np.log(2 * np.pi * np.e), abs=0.02)  # d/2 · log 2πe with d = 2


def test_the_mixture_is_fitted_once_per_reference():
    reference, other = clusters(200, seed=0), clusters(50, seed=1)
    metric = GMMNLL(n_components=2)
    first = metric.fit(reference)
    metric(reference.copy(), other)
    assert metric.fit(reference.copy()) is first
    assert metric.fit(reference + 1.0) is not first


def test_a_mixture_that_does_not_converge_says_so(caplog):
    reference = clusters(300, seed=0)
    with caplog.at_level(logging.WARNING, logger="esq.metrics"):
        result = GMMNLL(n_components=3, max_iter=1)(reference, reference)
    assert result.details["converged"] is False
    assert "did not converge in max_iter=1" in caplog.text


def kde_by_hand(reference: np.ndarray, other: np.ndarray, bandwidth: float) -> float:
    """−mean log of (1/N) Σⱼ N(oᵢ; rⱼ, h²I)."""
    n, d = reference.shape
    squared = ((other[:, None, :] - reference[None, :, :]) ** 2).sum(axis=2)
    log_density = (
        logsumexp(-squared / (2 * bandwidth**2), axis=1) - np.log(n) - d / 2 * np.log(2 * np.pi * bandwidth**2)
    )
    return float(-log_density.mean())


@pytest.mark.parametrize(
    ("bandwidth", "h"),
    [
        (0.7, lambda n, d: 0.7),
        ("scott", lambda n, d: n ** (-1 / (d + 4))),
        ("silverman", lambda n, d: (n * (d + 2) / 4) ** (-1 / (d + 4))),
    ],
)
def test_kde_nll_equals_a_hand_computation(bandwidth, h):
    reference, other = clusters(300, seed=0), clusters(40, seed=1, shift=0.5)
    result = KDENLL(bandwidth=bandwidth)(reference, other)
    assert result.details["bandwidth"] == pytest.approx(h(300, 3), rel=1e-12)
    assert result.value == pytest.approx(kde_by_hand(reference, other, h(300, 3)), rel=1e-10)


@pytest.mark.parametrize(
    ("factory", "options", "message"),
    [
        (
            GMMMahalanobis,
            {"covariance_type": "fulll"},
            "covariance_type must be one of 'full', 'tied', 'diag', 'spherical'",
        ),
        (GMMNLL, {"covariance_type": "FULL"}, "covariance_type must be one of"),
        (GMMNLL, {"n_components": 0}, "n_components must be an integer.* at least 1"),
        (GMMMahalanobis, {"n_components": 2.5}, "n_components"),
        (GMMNLL, {"reg_covar": -1e-6}, "reg_covar must be a finite number at least 0"),
        (GMMNLL, {"max_iter": 0}, "max_iter"),
        (GMMMahalanobis, {"seed": -3}, "seed"),
        (KDENLL, {"bandwidth": 0.0}, "bandwidth must be a finite number greater than 0"),
        (KDENLL, {"bandwidth": "auto"}, "bandwidth must be one of 'scott', 'silverman'"),
        (KDENLL, {"bandwidth": float("inf")}, "bandwidth"),
    ],
)
def test_bad_options_are_config_errors_that_say_what_is_valid(factory, options, message):
    with pytest.raises(ConfigError, match=message):
        factory(**options)


@pytest.mark.parametrize("name", ["gmm_mahalanobis", "gmm_nll"])
def test_more_components_than_reference_rows_is_a_clear_error(name):
    reference, other = clusters(4, seed=0), clusters(10, seed=1)
    with pytest.raises(DataError, match="n_components=5 needs at least 5 reference rows, got 4; lower n_components"):
        getattr(esq_metrics, name)(reference, other)


@pytest.mark.parametrize("name", ["gmm_mahalanobis", "gmm_nll", "kde_nll"])
def test_bad_input_is_a_data_error_naming_the_argument(name):
    metric = getattr(esq_metrics, name)
    reference, other = clusters(50, seed=0), clusters(20, seed=1)
    with_nan = other.copy()
    with_nan[3, 1] = np.nan
    with pytest.raises(DataError, match="`other` contains NaN"):
        metric(reference, with_nan)
    with pytest.raises(DataError, match="same number of columns, got 3 and 2"):
        metric(reference, other[:, :2])
    with pytest.raises(DataError, match="`other` needs at least 2 rows"):
        metric(reference, other[:1])


@pytest.mark.parametrize("name", ["gmm_mahalanobis", "gmm_nll", "kde_nll"])
def test_the_plain_function_returns_a_float_equal_to_the_components_value(name):
    reference, other = clusters(100, seed=0), clusters(30, seed=1, shift=0.5)
    value = getattr(esq_metrics, name)(reference, other)
    assert type(value) is float
    assert value == esq.registry("metrics").create(name)(reference, other).value
