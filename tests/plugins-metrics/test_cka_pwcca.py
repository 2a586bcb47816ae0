"""CKA and PWCCA: conformance, quadratic-memory references, the svcca reference steps, ckatorch,
invariances, noise, blocks, bad input."""

from __future__ import annotations

import importlib
import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

import esq
import esq_metrics
from esq import ConfigError, DataError, MetricSpec
from esq.testing import check_metric
from esq_metrics import scatter
from esq_metrics.cka import CKA, median_squared_distance
from esq_metrics.pwcca import PWCCA

cka, pwcca = esq_metrics.cka, esq_metrics.pwcca
cka_module = importlib.import_module("esq_metrics.cka")  # esq_metrics.cka is the plain function
pwcca_module = importlib.import_module("esq_metrics.pwcca")

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def paired(rows: int, columns_x: int, columns_y: int, seed: int, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Correlated, non-centred x and a noisy linear image of it."""
    generator = np.random.default_rng(seed)
    x = generator.normal(size=(rows, columns_x)) @ generator.normal(size=(columns_x, columns_x)) + 2.0
    y = x @ generator.normal(size=(columns_x, columns_y)) + noise * generator.normal(size=(rows, columns_y)) - 1.0
    return x, y


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def orthogonal(size: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))[0]


def spec(name: str, factory, value_range=(0.0, 1.0)) -> MetricSpec:
    return MetricSpec(
        name=name, factory=factory, summary=name, kind="similarity", higher_is_better=True, range=value_range
    )


@pytest.mark.parametrize(
    ("factory", "options", "value_range"),
    [
        (CKA, {}, (0.0, 1.0)),
        (CKA, {"kernel": "rbf"}, (0.0, 1.0)),
        (CKA, {"kernel": "rbf", "sigma": 3.0, "max_samples": 300}, (0.0, 1.0)),
        (CKA, {"debiased": True}, (-1.0, 1.0)),
        (CKA, {"kernel": "rbf", "debiased": True}, (-1.0, 1.0)),
        (PWCCA, {}, (0.0, 1.0)),
        (PWCCA, {"method": "paper"}, (0.0, 1.0)),
        (PWCCA, {"epsilon": 0.0, "max_components": 4}, (0.0, 1.0)),
    ],
)
def test_each_metric_passes_the_conformance_checks(factory, options, value_range):
    check_metric(spec(factory.__name__.lower(), factory, value_range), **options)


# quadratic-memory references


def centred_gram(gram: np.ndarray) -> np.ndarray:
    n = len(gram)
    centring = np.eye(n) - np.ones((n, n)) / n
    return centring @ gram @ centring


def hsic_biased(k: np.ndarray, m: np.ndarray) -> float:
    """tr(KHMH)/(n − 1)²."""
    return float(np.trace(k @ centred_gram(m))) / (len(k) - 1) ** 2


def hsic_unbiased(k: np.ndarray, m: np.ndarray) -> float:
    """Song et al. 2012, eq. 5, with the diagonals of K and M set to 0."""
    n = len(k)
    k, m = k - np.diag(np.diag(k)), m - np.diag(np.diag(m))
    ones = np.ones(n)
    value = np.trace(k @ m) + (ones @ k @ ones) * (ones @ m @ ones) / ((n - 1) * (n - 2))
    return float(value - 2 / (n - 2) * (ones @ k @ m @ ones)) / (n * (n - 3))


def gram(features: np.ndarray, kernel: str, sigma: float | None = None) -> np.ndarray:
    if kernel == "linear":
        return features @ features.T
    squared = cdist(features, features, "sqeuclidean")
    bandwidth = np.median(squared) if sigma is None else sigma**2
    return np.exp(-squared / (2 * bandwidth))


def cka_by_grams(x, y, kernel="linear", debiased=False, sigma=None) -> float:
    hsic = hsic_unbiased if debiased else hsic_biased
    k, m = gram(x, kernel, sigma), gram(y, kernel, sigma)
    return hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("rows", [30, 31])
def test_cka_equals_hsic_on_n_by_n_gram_matrices(kernel, debiased, rows):
    x, y = paired(rows, 5, 7, seed=rows)
    assert relative(cka(x, y, kernel=kernel, debiased=debiased), cka_by_grams(x, y, kernel, debiased)) < 1e-10


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_with_an_absolute_sigma_equals_the_gram_formula(debiased):
    x, y = paired(30, 5, 7, seed=0)
    result = CKA(kernel="rbf", debiased=debiased, sigma=4.0)(x, y)
    assert relative(result.value, cka_by_grams(x, y, "rbf", debiased, sigma=4.0)) < 1e-10
    assert result.details["sigma_x"] == result.details["sigma_y"] == 4.0


def test_cka_details_hold_the_hsic_terms():
    x, y = paired(30, 5, 7, seed=0)
    details = CKA(kernel="rbf")(x, y).details
    k, m = gram(x, "rbf"), gram(y, "rbf")
    assert relative(details["hsic_xy"], hsic_biased(k, m)) < 1e-10
    assert relative(details["hsic_xx"], hsic_biased(k, k)) < 1e-10
    assert relative(details["hsic_yy"], hsic_biased(m, m)) < 1e-10
    assert relative(details["sigma_x"], np.sqrt(np.median(cdist(x, x, "sqeuclidean")))) < 1e-12
    assert (details["n"], details["kernel"], details["debiased"]) == (30, "rbf", False)


def test_debiased_cka_is_about_zero_and_can_be_negative_for_unrelated_features():
    generator = np.random.default_rng(0)
    values = [cka(generator.normal(size=(50, 4)), generator.normal(size=(50, 4)), debiased=True) for _ in range(20)]
    assert min(values) < 0 < max(values) and abs(np.mean(values)) < 0.05
    biased = [cka(generator.normal(size=(50, 4)), generator.normal(size=(50, 4))) for _ in range(20)]
    assert min(biased) > 0


@pytest.mark.parametrize("rows", [7, 8])
def test_median_squared_distance_is_numpys_median_of_the_full_matrix(rows):
    features = np.random.default_rng(rows).normal(size=(rows, 3))
    assert relative(median_squared_distance(features), np.median(cdist(features, features, "sqeuclidean"))) < 1e-12


# the peer: ckatorch


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_equals_ckatorch_cka_base(kernel, debiased):
    torch = pytest.importorskip("torch")
    ckatorch = pytest.importorskip("ckatorch")
    # an odd row count: torch.median takes the lower of the two middle values when the count is even
    x, y = paired(41, 5, 7, seed=1)
    peer = ckatorch.cka_base(torch.from_numpy(x), torch.from_numpy(y), kernel=kernel, unbiased=debiased)
    assert relative(cka(x, y, kernel=kernel, debiased=debiased), float(peer)) < 1e-6


# invariances


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, scale=st.floats(min_value=1e-3, max_value=1e3), debiased=st.booleans())
def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling_of_either_side(seed, scale, debiased):
    x, y = paired(40, 5, 6, seed=seed)
    value = cka(x, y, debiased=debiased)
    assert abs(cka(scale * x @ orthogonal(5, seed), y, debiased=debiased) - value) < 1e-10
    assert abs(cka(x, scale * y @ orthogonal(6, seed + 1), debiased=debiased) - value) < 1e-10
    rbf = cka(x, y, kernel="rbf", debiased=debiased)
    assert abs(cka(x, scale * y @ orthogonal(6, seed), kernel="rbf", debiased=debiased) - rbf) < 1e-10


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS)
def test_cka_changes_under_a_general_linear_map(seed):
    x, y = paired(40, 5, 6, seed=seed)
    stretch = np.diag([1.0, 10.0, 0.1, 3.0, 1.0, 0.3]) @ orthogonal(6, seed)  # far from orthogonal
    assert abs(cka(x, y @ stretch) - cka(x, y)) > 1e-4


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, method=st.sampled_from(["svcca_reference", "paper"]))
def test_canonical_correlations_are_invariant_to_invertible_linear_maps(seed, method):
    x, y = paired(60, 4, 5, seed=seed, noise=1.0)
    generator = np.random.default_rng(seed)
    map_x, map_y = generator.normal(size=(4, 4)) + 3 * np.eye(4), generator.normal(size=(5, 5)) + 3 * np.eye(5)
    result = PWCCA(epsilon=0.0, method=method)(x, y)
    mapped = PWCCA(epsilon=0.0, method=method)(x @ map_x + 1.0, y @ map_y)
    assert np.allclose(mapped.details["canonical_correlations"], result.details["canonical_correlations"], atol=1e-6)
    # the weights come from x (4 columns ≤ 5), so a map of y leaves PWCCA unchanged
    assert abs(PWCCA(epsilon=0.0, method=method)(x, y @ map_y - 2.0).value - result.value) < 1e-6


def test_pwcca_weights_depend_on_the_basis_of_the_side_that_provides_them():
    x, y = paired(60, 4, 5, seed=0, noise=1.0)
    map_x = np.random.default_rng(0).normal(size=(4, 4)) + 3 * np.eye(4)
    for method in ("svcca_reference", "paper"):
        assert abs(pwcca(x @ map_x, y, epsilon=0.0, method=method) - pwcca(x, y, epsilon=0.0, method=method)) > 1e-4


@pytest.mark.parametrize(
    "metric",
    [
        lambda x, y: cka(x, y),
        lambda x, y: cka(x, y, debiased=True),
        lambda x, y: cka(x, y, kernel="rbf"),
        lambda x, y: pwcca(x, y),
        lambda x, y: pwcca(x, y, method="paper"),
    ],
    ids=["cka", "cka_debiased", "cka_rbf", "pwcca", "pwcca_paper"],
)
def test_similarity_falls_as_noise_added_to_y_grows(metric):
    levels = [0.1, 0.3, 1.0, 3.0, 10.0]
    means = []
    for level in levels:
        values = []
        for seed in range(4):
            generator = np.random.default_rng(seed)
            x = generator.normal(size=(200, 6)) @ generator.normal(size=(6, 6))
            values.append(metric(x, x + level * x.std() * generator.normal(size=x.shape)))
        means.append(np.mean(values))
    assert all(a > b for a, b in itertools.pairwise(means)), means


@pytest.mark.parametrize(
    "metric",
    [
        CKA(),
        CKA(debiased=True),
        CKA(kernel="rbf"),
        CKA(kernel="rbf", debiased=True),
        PWCCA(epsilon=0.0),
        PWCCA(epsilon=0.0, method="paper"),
    ],
    ids=repr,
)
def test_identical_inputs_give_one(metric):
    x, _ = paired(80, 6, 6, seed=3)
    assert abs(metric(x, x).value - 1.0) < 1e-10


def test_pwcca_with_the_default_epsilon_shrinks_identical_inputs_by_about_epsilon():
    x, _ = paired(80, 6, 6, seed=3)
    covariance = np.cov(x, rowvar=False)
    eigenvalues = np.linalg.eigvalsh(covariance / np.abs(covariance).max())
    shortfall = 1.0 - pwcca(x, x)
    assert 0 < shortfall <= 1e-6 / eigenvalues[0]


# PWCCA against the reference's steps


def svcca_reference(x: np.ndarray, y: np.ndarray, epsilon: float) -> tuple[float, np.ndarray, np.ndarray]:
    """google/svcca ``cca_core.get_cca_similarity`` + ``pwcca.compute_pwcca``, step by step, in its
    neurons × datapoints layout, with the y branch reading y (google/svcca#9)."""
    acts1, acts2 = x.T, y.T
    numx = len(acts1)
    covariance = np.cov(acts1, acts2)
    sigma_xx, sigma_xy = covariance[:numx, :numx].copy(), covariance[:numx, numx:].copy()
    sigma_yy = covariance[numx:, numx:].copy()
    xmax, ymax = np.max(np.abs(sigma_xx)), np.max(np.abs(sigma_yy))
    sigma_xx /= xmax
    sigma_yy /= ymax
    sigma_xy /= np.sqrt(xmax * ymax)
    x_idxs, y_idxs = np.abs(np.diagonal(sigma_xx)) >= epsilon, np.abs(np.diagonal(sigma_yy)) >= epsilon
    sigma_xx = sigma_xx[x_idxs][:, x_idxs] + epsilon * np.eye(x_idxs.sum())
    sigma_yy = sigma_yy[y_idxs][:, y_idxs] + epsilon * np.eye(y_idxs.sum())
    sigma_xy = sigma_xy[x_idxs][:, y_idxs]

    def positive_definite_root(array):
        w, v = np.linalg.eigh(array)
        return v @ np.diag(np.sqrt(w)) @ v.conj().T

    invsqrt_xx = positive_definite_root(np.linalg.pinv(sigma_xx))
    invsqrt_yy = positive_definite_root(np.linalg.pinv(sigma_yy))
    u, s, v = np.linalg.svd(invsqrt_xx @ sigma_xy @ invsqrt_yy)
    coefs = np.abs(s)
    means1, means2 = acts1.mean(axis=1, keepdims=True), acts2.mean(axis=1, keepdims=True)
    if x_idxs.sum() <= y_idxs.sum():
        dirns = u.T @ (acts1[x_idxs] - means1[x_idxs]) + means1[x_idxs]
        acts, idxs = acts1, x_idxs
    else:
        dirns = v @ (acts2[y_idxs] - means2[y_idxs]) + means2[y_idxs]
        acts, idxs = acts2, y_idxs
    basis, _ = np.linalg.qr(dirns.T)
    weights = np.abs(basis.T @ acts[idxs].T).sum(axis=1)
    weights = weights / weights.sum()
    return float(np.sum(weights * coefs)), weights, coefs


@pytest.mark.parametrize(("columns_x", "columns_y", "side"), [(4, 6, "x"), (6, 4, "y"), (5, 5, "x")])
@pytest.mark.parametrize("epsilon", [0.0, 1e-6, 1e-2])
def test_pwcca_equals_the_svcca_reference_steps(columns_x, columns_y, side, epsilon):
    x, y = paired(50, columns_x, columns_y, seed=columns_x)
    result = PWCCA(epsilon=epsilon)(x, y)
    value, weights, coefs = svcca_reference(x, y, epsilon)
    assert abs(result.value - value) < 1e-10
    assert np.allclose(result.details["weights"], weights, rtol=0, atol=1e-10)
    assert np.allclose(result.details["canonical_correlations"], coefs, rtol=0, atol=1e-10)
    assert result.details["weights_from"] == side
    assert abs(result.details["mean_cca"] - coefs.mean()) < 1e-12


def test_pwcca_drops_dead_columns_and_then_weights_by_y_as_the_reference_does():
    x, y = paired(50, 5, 5, seed=0)
    y[:, 2] = 0.5  # a dead unit of a quantiser
    result = PWCCA()(x, y)
    assert result.details["kept"] == [5, 4] and result.details["weights_from"] == "y"
    assert abs(result.value - svcca_reference(x, y, 1e-6)[0]) < 1e-10


def test_the_reference_steps_fail_at_epsilon_zero_on_a_dead_column_and_pwcca_says_why():
    failures = 0
    for seed in range(5):
        x, y = paired(50, 5, 5, seed=seed)
        y[:, 2] = 0.5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                failures += not np.isfinite(svcca_reference(x, y, 0.0)[0])
            except np.linalg.LinAlgError:
                failures += 1
        with pytest.raises(DataError, match=r"covariance of the kept columns of `y` is singular.*epsilon > 0"):
            pwcca(x, y, epsilon=0.0, max_components="none")
        # "auto": there is no reference number here, so y is reduced to its span (4 components), losing nothing
        result = PWCCA(epsilon=0.0)(x, y)
        assert result.details["components"] == [5, 4]
        expected = svcca_reference(x, principal_scores(y, 4), 0.0)[0]
        assert abs(result.value - expected) < 1e-8
    assert failures > 0


def quantised_pair(columns_x: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x and a quantiser's output y with 8 codes: 200 rows, 8 distinct, so y's 10 columns span 7 dimensions."""
    generator = np.random.default_rng(seed)
    codes = generator.normal(size=(8, 10))
    assigned = generator.integers(0, 8, size=200)
    x = generator.normal(size=(200, columns_x)) + codes[assigned] @ generator.normal(size=(10, columns_x))
    return x, codes[assigned]


def test_pwcca_auto_reduces_a_dependent_side_that_provides_the_weights_to_its_span():
    x, y = quantised_pair(12)  # y has fewer columns, so its basis gives the weights: undefined with 10 for 7
    result = PWCCA()(x, y)
    assert result.details["components"] == [12, 7] and result.details["weights_from"] == "y"
    assert abs(result.value - svcca_reference(x, principal_scores(y, 7), 1e-6)[0]) < 1e-8
    with pytest.raises(DataError, match=r"kept columns of `y` are \(nearly\) linearly dependent"):
        pwcca(x, y, max_components="none")


@pytest.mark.parametrize("method", ["svcca_reference", "paper"])
def test_pwcca_auto_keeps_a_dependent_side_whole_where_the_reference_is_defined(method):
    x, y = quantised_pair(6)  # x gives the weights (and always does for "paper"): the reference's number exists
    result = PWCCA(method=method)(x, y)
    assert result.details["components"] == [6, 10] and result.details["weights_from"] == "x"
    expected = pwcca_paper(x, y, 1e-6) if method == "paper" else svcca_reference(x, y, 1e-6)[0]
    # y's covariance is singular but for epsilon: its whitening (ε^−½ on 3 directions) amplifies rounding
    assert abs(result.value - expected) < 1e-6


def test_pwcca_of_a_bootstrap_replicate_with_fewer_distinct_rows_than_dimensions_is_computed():
    x, y = paired(60, 40, 45, seed=0, noise=2.0)
    rows = np.random.default_rng(0).integers(0, 60, size=60)  # about 38 distinct rows: both sides' columns dependent
    distinct = len(np.unique(rows))
    assert distinct <= 40
    result = PWCCA()(x[rows], y[rows])
    assert result.details["components"] == [distinct - 1, 45] and np.isfinite(result.value)
    with pytest.raises(DataError, match="linearly dependent"):
        pwcca(x[rows], y[rows], max_components="none")


def principal_scores(features: np.ndarray, components: int) -> np.ndarray:
    """The leading principal component scores, with the axes' signs eigh gives (as esq's): the reference's
    weights add each column's mean back to the rotated directions, so a side left whole next to a reduced
    one has weights that depend on the signs of the singular vectors, and so on those of the axes."""
    centred = features - features.mean(axis=0)
    return centred @ np.linalg.eigh(centred.T @ centred)[1][:, ::-1][:, :components]


@pytest.mark.parametrize(("rows", "columns_x", "columns_y"), [(40, 25, 10), (60, 20, 35), (50, 12, 30), (45, 30, 12)])
@pytest.mark.parametrize("max_components", ["auto", "none", None, "widest"])
def test_pwcca_equals_the_reference_wherever_the_reference_runs(rows, columns_x, columns_y, max_components):
    # N > d but N < 2d: the regime where the reduction to N/2 components used to change the value; d_x + d_y < N
    # keeps the canonical correlations distinct, so the weights (set by their directions) are defined
    x, y = paired(rows, columns_x, columns_y, seed=rows, noise=2.0)
    if max_components == "widest":
        max_components = max(columns_x, columns_y)
    result = PWCCA(max_components=max_components)(x, y)
    value, weights, coefs = svcca_reference(x, y, 1e-6)
    assert result.details["components"] == [columns_x, columns_y]
    assert abs(result.value - value) < 1e-6
    assert np.allclose(result.details["canonical_correlations"], coefs, rtol=0, atol=1e-6)
    # the weights come through a Cholesky factor of DᵀD, the reference's through QR of D: 1e-5 at these conditions
    assert np.allclose(result.details["weights"], weights, rtol=0, atol=1e-5)


@pytest.mark.parametrize("max_components", ["auto", "none"])
def test_pwcca_of_a_side_and_its_invertible_linear_map_is_one_when_nothing_is_reduced(max_components):
    generator = np.random.default_rng(0)
    x = generator.normal(size=(60, 40))  # N/2 < d < N
    invertible = generator.normal(size=(40, 40)) + 3 * np.eye(40)
    assert abs(pwcca(x, x @ invertible + 1.0, epsilon=0.0, max_components=max_components) - 1.0) < 1e-8
    assert pwcca(x, x @ invertible, epsilon=0.0, max_components=20) < 0.99  # each side's own top-20 directions


def test_pwcca_canonical_correlations_are_invariant_to_invertible_maps_when_wider_than_half_the_samples():
    x, y = paired(50, 30, 28, seed=1, noise=3.0)
    generator = np.random.default_rng(1)
    map_x, map_y = generator.normal(size=(30, 30)) + 4 * np.eye(30), generator.normal(size=(28, 28)) + 4 * np.eye(28)
    result = PWCCA(epsilon=0.0)(x, y)
    mapped = PWCCA(epsilon=0.0)(x @ map_x, y @ map_y - 2.0)
    assert np.allclose(mapped.details["canonical_correlations"], result.details["canonical_correlations"], atol=1e-6)


@pytest.mark.parametrize(("columns_x", "columns_y", "expected"), [(40, 36, [14, 14]), (40, 12, [14, 12])])
def test_pwcca_auto_reduces_only_sides_at_least_as_wide_as_the_samples(columns_x, columns_y, expected):
    x, y = paired(30, columns_x, columns_y, seed=0, noise=2.0)
    result = PWCCA()(x, y)
    assert result.details["components"] == expected and result.details["max_components"] == "auto"
    scores = [principal_scores(x, expected[0]), principal_scores(y, expected[1]) if columns_y >= 30 else y]
    assert abs(result.value - svcca_reference(*scores, 1e-6)[0]) < 1e-10


def test_pwcca_max_components_none_keeps_a_side_wider_than_the_samples():
    x, y = paired(30, 10, 40, seed=0, noise=2.0)
    result = PWCCA(max_components="none")(x, y)
    assert result.details["components"] == [10, 40]
    # every canonical correlation is about 1 (d_y ≥ N), so their directions and the weights are barely defined
    assert abs(result.value - svcca_reference(x, y, 1e-6)[0]) < 1e-5


def test_pwcca_max_components_reduces_both_sides_to_at_most_that_many():
    x, y = paired(200, 8, 6, seed=0, noise=2.0)
    result = PWCCA(max_components=5)(x, y)
    assert result.details["components"] == [5, 5]
    assert abs(result.value - svcca_reference(principal_scores(x, 5), principal_scores(y, 5), 1e-6)[0]) < 1e-10
    assert PWCCA(max_components=7)(x, y).details["components"] == [7, 6]
    assert PWCCA()(x, y).details["components"] == [8, 6]


def test_pwcca_refuses_max_components_above_both_widths_naming_the_option():
    x, y = paired(200, 8, 6, seed=0)
    with pytest.raises(ConfigError, match=r"pwcca: max_components=9 is more than the features' dimensions \(x 8, y 6"):
        pwcca(x, y, max_components=9)
    assert np.isfinite(pwcca(x, y, max_components=8))


@pytest.mark.parametrize(("rows", "columns_x", "columns_y"), [(30, 20, 5), (40, 20, 20), (60, 10, 50)])
def test_pwcca_warns_once_naming_n_and_d_when_there_are_too_few_samples(rows, columns_x, columns_y, caplog):
    x, y = paired(rows, columns_x, columns_y, seed=0, noise=2.0)
    metric = PWCCA()
    with caplog.at_level("WARNING", logger="esq.metrics"):
        first, second = metric(x, y), metric(x[::-1], y[::-1])
    warnings_logged = [record.getMessage() for record in caplog.records if record.name == "esq.metrics"]
    assert len(warnings_logged) == 1
    assert f"N={rows} samples are too few for CCA of x's {columns_x} and y's {columns_y} dim" in warnings_logged[0]
    assert "biased up" in warnings_logged[0] and f"max_components={(rows - 1) // 2}" in warnings_logged[0]
    assert first.details["warning"] == second.details["warning"] == warnings_logged[0]


def test_pwcca_says_when_auto_reduced_a_side_as_wide_as_the_samples_and_not_when_asked(caplog):
    x, y = paired(10, 32, 32, seed=0)
    with caplog.at_level("WARNING", logger="esq.metrics"):
        result = PWCCA()(x, y)
        PWCCA(max_components=4)(x, y)
    (record,) = [record for record in caplog.records if record.name == "esq.metrics"]
    assert result.details["kept"] == [4, 4] and result.details["warning"] == record.getMessage()
    assert "x's 32 dimensions and y's 32 dimensions are at least N=10 samples" in record.getMessage()
    assert "CCA ran on 4 and 4 leading principal components" in record.getMessage()
    assert pwcca_module.reduction_warning(320, [32, 32], [31, 32], "auto") is None  # cut to its rank: lossless


def test_pwcca_does_not_warn_with_at_least_twice_as_many_samples_as_dimensions(caplog):
    x, y = paired(40, 20, 19, seed=0)
    with caplog.at_level("WARNING", logger="esq.metrics"):
        result = PWCCA()(x, y)
    assert "warning" not in result.details and not caplog.records


def test_pwcca_small_sample_warning_counts_the_correlations_that_are_one_whatever_the_data():
    assert "11 of them are 1 whatever the data" in pwcca_module.small_sample_warning(30, [20, 20])
    assert "1 of them is 1" in pwcca_module.small_sample_warning(30, [15, 15])
    assert "whatever the data" not in pwcca_module.small_sample_warning(30, [16, 5])
    assert pwcca_module.small_sample_warning(30, [15, 14]) is None


@pytest.mark.parametrize("value", [0, -3, "all", "None", "", True, 2.5, [4]])
def test_pwcca_bad_max_components_are_config_errors_naming_the_option(value):
    with pytest.raises(ConfigError, match=r"pwcca: max_components must be an integer at least 1.*'none'"):
        PWCCA(max_components=value)


def test_pwcca_max_components_none_from_the_command_line_passes_the_registry_check():
    from esq.config import parse_value

    value = parse_value("none")  # what --set metric_options.pwcca.max_components=none gives
    esq.registry("metrics").check("pwcca", max_components=value)
    assert esq.registry("metrics").create("pwcca", max_components=value).options["max_components"] == "none"
    assert PWCCA(max_components=None).options["max_components"] == "none"
    with pytest.raises(ConfigError, match="max_components"):
        esq.registry("metrics").check("pwcca", max_components=parse_value("nne"))


def pwcca_paper(x: np.ndarray, y: np.ndarray, epsilon: float) -> float:
    """Morcos et al. 2018's α with a plain CCA: whitening (the covariances divided by their largest
    entry, ε on the diagonals), SVD, canonical variates of x scaled to unit length."""

    def inverse_root(matrix):
        w, v = np.linalg.eigh(matrix + epsilon * np.eye(len(matrix)))
        return v @ np.diag(w**-0.5) @ v.T

    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    covariance_x, covariance_y, cross = xc.T @ xc, yc.T @ yc, xc.T @ yc
    largest_x, largest_y = np.abs(covariance_x).max(), np.abs(covariance_y).max()
    whitening_x, whitening_y = inverse_root(covariance_x / largest_x), inverse_root(covariance_y / largest_y)
    u, rho, _ = np.linalg.svd(whitening_x @ cross @ whitening_y / np.sqrt(largest_x * largest_y), full_matrices=False)
    variates = xc @ whitening_x @ u
    variates /= np.linalg.norm(variates, axis=0)
    alpha = np.abs(variates.T @ x).sum(axis=1)
    return float(alpha @ rho / alpha.sum())


@pytest.mark.parametrize(("columns_x", "columns_y"), [(4, 6), (6, 4), (5, 5)])
@pytest.mark.parametrize("epsilon", [0.0, 0.01])
def test_pwcca_paper_method_equals_a_direct_cca(columns_x, columns_y, epsilon):
    x, y = paired(50, columns_x, columns_y, seed=columns_y)
    result = PWCCA(epsilon=epsilon, method="paper")(x, y)
    assert abs(result.value - pwcca_paper(x, y, epsilon)) < 1e-8
    assert result.details["weights_from"] == "x" and result.details["kept"] == [columns_x, columns_y]
    assert abs(result.value - pwcca(x, y, epsilon=epsilon)) > 1e-4  # the reference weights differently


# blocks, dtypes, input forms


def test_blocks_of_rows_give_the_values_of_one_block(monkeypatch):
    x, y = paired(50, 5, 7, seed=0)
    metrics = [CKA(), CKA(debiased=True), CKA(kernel="rbf"), CKA(kernel="rbf", debiased=True), PWCCA()]
    whole = [metric(x, y).value for metric in metrics]
    monkeypatch.setattr(scatter, "ROWS_PER_BLOCK", 7)
    monkeypatch.setattr(cka_module, "KERNEL_ROWS_PER_BLOCK", 6)
    for metric, value in zip(metrics, whole, strict=True):
        assert relative(metric(x, y).value, value) < 1e-12


def test_float32_and_torch_input_equal_float64_of_the_same_values():
    torch = pytest.importorskip("torch")
    x, y = paired(60, 5, 7, seed=0)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    for metric in (cka, pwcca):
        expected = metric(x32.astype(np.float64), y32.astype(np.float64))
        assert metric(x32, y32) == expected
        assert metric(torch.from_numpy(x32), torch.from_numpy(y32)) == expected


def test_read_only_input_is_accepted():
    x, y = paired(60, 5, 7, seed=0)
    expected = (cka(x, y), pwcca(x, y), cka(x, y, kernel="rbf"))
    x.setflags(write=False)
    y.setflags(write=False)
    assert (cka(x, y), pwcca(x, y), cka(x, y, kernel="rbf")) == expected


@pytest.mark.parametrize(("function", "factory"), [(cka, CKA), (pwcca, PWCCA)])
def test_the_plain_function_returns_a_float_equal_to_the_components_value(function, factory):
    x, y = paired(60, 5, 7, seed=0)
    value = function(x, y)
    assert type(value) is float and value == factory()(x, y).value


# bad input and options


@pytest.mark.parametrize("metric", [CKA(), CKA(kernel="rbf"), PWCCA()], ids=repr)
@pytest.mark.parametrize("side", ["x", "y"])
def test_a_constant_side_is_a_data_error_naming_the_metric_and_why(metric, side):
    x, y = paired(30, 4, 5, seed=0)
    inputs = {"x": x, "y": y}
    inputs[side] = np.full_like(inputs[side], 0.1)
    name = type(metric).__name__.lower()
    with pytest.raises(DataError, match=rf"{name}: `{side}` is constant .* no variance after centring"):
        metric(inputs["x"], inputs["y"])


@pytest.mark.parametrize("metric", [CKA(), CKA(kernel="rbf"), PWCCA()], ids=repr)
def test_bad_shapes_and_values_are_data_errors_naming_the_argument(metric, monkeypatch):
    x, y = paired(30, 4, 5, seed=0)
    with pytest.raises(DataError, match="`x` needs at least 3 rows"):
        metric(x[:2], y[:2])
    with pytest.raises(DataError, match="same number of rows"):
        metric(x, y[:-1])
    with pytest.raises(DataError, match="2-D array"):
        metric(x[:, 0], y)
    monkeypatch.setattr(scatter, "ROWS_PER_BLOCK", 8)
    late_nan = y.copy()
    late_nan[-1, 3] = np.inf  # in the last block of rows
    with pytest.raises(DataError, match="`y` contains NaN or infinite values"):
        metric(x, late_nan)


def test_debiased_cka_needs_four_samples():
    x, y = paired(3, 2, 2, seed=0)
    with pytest.raises(DataError, match="`x` needs at least 4 rows"):
        cka(x, y, debiased=True)
    assert np.isfinite(cka(x, y))


def test_rbf_cka_refuses_more_samples_than_max_samples_and_names_the_option():
    x, y = paired(40, 3, 3, seed=0)
    with pytest.raises(DataError, match=r"40×40 kernel matrices, more than max_samples=39 .* raise `max_samples`"):
        cka(x, y, kernel="rbf", max_samples=39)
    assert np.isfinite(cka(x, y, kernel="rbf", max_samples=40))


def test_rbf_cka_refuses_a_zero_median_distance_and_names_sigma():
    x, y = paired(40, 3, 3, seed=0)
    x[1:30] = x[0]  # most pairs identical
    with pytest.raises(DataError, match="median heuristic gives σ = 0 for `x`.*explicit `sigma`"):
        cka(x, y, kernel="rbf")
    assert np.isfinite(cka(x, y, kernel="rbf", sigma=1.0))


def test_pwcca_refuses_linearly_dependent_columns_of_the_weighting_side():
    x, y = paired(50, 4, 5, seed=0)
    x = np.hstack([x, x[:, :1] - x[:, 1:2]])  # a dependent fifth column
    x -= x.mean(axis=0)  # centred, so the means cannot restore the rank
    with pytest.raises(DataError, match=r"kept columns of `x` are \(nearly\) linearly dependent.*method=.paper."):
        pwcca(x, y, epsilon=1e-3, max_components="none")
    assert np.isfinite(pwcca(x, y, epsilon=1e-3, method="paper", max_components="none"))
    assert PWCCA(epsilon=1e-3)(x, y).details["components"] == [4, 5]  # "auto": x reduced to its span


@pytest.mark.parametrize(
    ("factory", "options", "message"),
    [
        (CKA, {"kernel": "poly"}, "cka: kernel must be one of 'linear', 'rbf'"),
        (CKA, {"debiased": 1}, "cka: debiased must be true or false"),
        (CKA, {"sigma": 0.0}, "cka: sigma must be a finite number greater than 0"),
        (CKA, {"sigma": float("nan")}, "cka: sigma"),
        (CKA, {"max_samples": 3}, "cka: max_samples must be an integer.* at least 4"),
        (PWCCA, {"epsilon": -1e-6}, "pwcca: epsilon must be a finite number at least 0 and less than 1"),
        (PWCCA, {"epsilon": 1.0}, "pwcca: epsilon"),
        (PWCCA, {"method": "svcca"}, "pwcca: method must be one of 'svcca_reference', 'paper'"),
        (PWCCA, {"max_components": 0}, "pwcca: max_components must be an integer.* at least 1"),
    ],
)
def test_bad_options_are_config_errors(factory, options, message):
    with pytest.raises(ConfigError, match=message):
        factory(**options)


@pytest.mark.parametrize(
    "metric",
    [
        CKA(kernel="rbf", debiased=True, sigma=2.0, max_samples=100),
        PWCCA(epsilon=1e-3, method="paper", max_components=3),
        PWCCA(max_components="none"),
    ],
    ids=repr,
)
def test_options_rebuild_the_same_metric(metric):
    rebuilt = type(metric)(**metric.options)
    assert rebuilt.options == metric.options
    x, y = paired(40, 4, 5, seed=0)
    assert rebuilt(x, y) == metric(x, y)
