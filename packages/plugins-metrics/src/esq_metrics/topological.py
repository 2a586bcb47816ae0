"""Geometry Score: how far apart the 1-dimensional topology of two point clouds is.

Khrulkov & Oseledets 2018, "Geometry Score: A Method For Comparing Generative Adversarial
Networks" (ICML), following the authors' reference code (github.com/KhrulkovV/geometry-score,
``gs/utils.py`` and ``gs/geom_score.py``). Unpaired: ``(reference: N×d, other: M×d)``, checked
with :func:`esq.two_samples`, in float64. The persistent homology comes from ``gudhi``,
an optional dependency (``pip install 'esq-metrics[topology]'``) imported only when the metric is
built or called.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from esq import ConfigError, DataError, MetricResult, WithOptions, check_int, check_number, two_samples
from esq_metrics.fingerprint import fingerprint

NAME = "topological_geometry_score"


def _gudhi() -> ModuleType:
    try:
        import gudhi
    except ImportError as error:
        raise ConfigError(f"{NAME} needs gudhi, which is not installed: pip install 'esq-metrics[topology]'") from error
    return gudhi


def _living_times(intervals: Any, alpha_max: float, i_max: int) -> np.ndarray:
    """:func:`relative_living_times` with one more entry: the fraction with i_max or more bars alive."""
    times = np.zeros(i_max + 1)
    bars = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    if alpha_max <= 0 or len(bars) == 0:
        times[0] = 1.0
        return times
    births = np.sort(np.minimum(bars[:, 0], alpha_max))
    deaths = np.sort(np.minimum(bars[:, 1], alpha_max))
    ends = np.unique(np.concatenate([[0.0, alpha_max], births, deaths]))
    middles = (ends[:-1] + ends[1:]) / 2
    alive = np.searchsorted(births, middles, side="right") - np.searchsorted(deaths, middles, side="right")
    times += np.bincount(np.minimum(alive, i_max), weights=np.diff(ends), minlength=i_max + 1)
    return times / alpha_max


def relative_living_times(intervals: Any, alpha_max: float, i_max: int) -> np.ndarray:
    """RLT(i) for i = 0 … i_max − 1: the fraction of [0, α_max] during which exactly i bars are alive.

    A bar [b, d) is alive at α when b ≤ α < d; a bar that never dies (d = ∞) is alive up to α_max.
    β(α) = #{bars alive at α} is constant between consecutive bar ends, so the measure of
    {α : β(α) = i} is a sum of gaps between them (exact, no grid). Time with i_max or more bars
    alive is counted nowhere, so the entries sum to 1 minus that fraction. No bars, or α_max = 0
    (a cloud of one repeated point): RLT = (1, 0, …, 0).

    >>> relative_living_times([[0.0, 0.5], [0.25, np.inf]], alpha_max=1.0, i_max=3).tolist()
    [0.0, 0.75, 0.25]
    """
    return _living_times(intervals, alpha_max, i_max)[:i_max]


def witness_h1_intervals(points: np.ndarray, landmarks: np.ndarray, gamma: float) -> tuple[np.ndarray, float]:
    """H1 persistence intervals (k × 2) of the witness complex on ``landmarks``, and its α_max.

    Every point is a witness. As in the reference code: each witness's landmarks sorted by
    Euclidean distance form the table of ``gudhi.WitnessComplex`` (the relaxed weak witness
    complex; gudhi documents squared distances there, the reference passes plain ones, and so does
    this function, so filtration values and α_max are distances); α_max = γ × the largest
    witness-to-landmark distance; the complex is built up to α_max with simplices of dimension ≤ 2
    (``limit_dimension=2``: triangles, enough for H1) and its persistence computed with
    coefficients in Z/2Z. Bars of length 0 are not reported.

    >>> square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> intervals, alpha_max = witness_h1_intervals(square, square, gamma=1.0)
    >>> alpha_max, len(intervals)
    (1.4142135623730951, 1)
    """
    distances = cdist(points, landmarks)
    order = np.argsort(distances, axis=1, kind="stable")
    # (witness, k, (landmark index, distance)): gudhi reads the float index column as an int
    table = np.stack([order.astype(np.float64), np.take_along_axis(distances, order, axis=1)], axis=2)
    alpha_max = gamma * float(distances.max())
    complex_ = _gudhi().WitnessComplex(nearest_landmark_table=table)
    tree = complex_.create_simplex_tree(max_alpha_square=alpha_max, limit_dimension=2)
    tree.compute_persistence(homology_coeff_field=2)
    return np.asarray(tree.persistence_intervals_in_dimension(1), dtype=np.float64).reshape(-1, 2), alpha_max


def relative_living_times_sample(
    points: np.ndarray, n_landmarks: int, gamma: float, i_max: int, n_repetitions: int, seed: int
) -> np.ndarray:
    """RLTs of ``points``, one row per random draw of ``n_landmarks`` landmarks: n_repetitions ×
    (i_max + 1), the last column the fraction of [0, α_max] with i_max or more H1 bars alive.

    The landmarks are rows drawn without replacement by ``numpy.random.default_rng(seed)``, so two
    clouds with the same number of rows use the same row indices at every repetition.

    >>> square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> relative_living_times_sample(square, 4, gamma=1.0, i_max=2, n_repetitions=1, seed=0).sum()
    np.float64(1.0)
    """
    generator = np.random.default_rng(seed)
    rlts = np.empty((n_repetitions, i_max + 1))
    for repetition in range(n_repetitions):
        landmarks = points[generator.choice(len(points), n_landmarks, replace=False)]
        rlts[repetition] = _living_times(*witness_h1_intervals(points, landmarks, gamma), i_max)
    return rlts


class TopologicalGeometryScore(WithOptions):
    """Geometry Score (Khrulkov & Oseledets 2018): squared L2 distance between mean RLTs of H1.

    For each cloud X and each of ``n_repetitions`` draws of ``n_landmarks`` random landmarks L
    (rows of X, without replacement, seeded by ``seed``): the witness complex on L witnessed by all
    of X, filtered up to α_max = ``gamma`` × max_{x∈X, l∈L} ‖x − l‖ (see
    :func:`witness_h1_intervals`); its H1 bars; and their relative living times

        RLT(i) = |{α ∈ [0, α_max] : exactly i H1 bars alive at α}| / α_max,   i = 0 … i_max − 1

    (:func:`relative_living_times`). MRLT is their mean over repetitions and

        GS = Σᵢ (MRLT_reference(i) − MRLT_other(i))²,

    0 for the same topology; at most 2, since each MRLT is non-negative and sums to at most 1.
    Distances only, and relative to α_max: GS does not change when a cloud is translated,
    rotated or scaled.

    Defaults are the paper's L₀ = 64, γ = 1/128 and i_max = 100, except ``n_repetitions``: 100
    instead of the paper's 10,000, for time (the MRLTs are means of i.i.d. draws, so their noise
    falls as 1/√n_repetitions). The reference code's default γ is 1/128 × N/5000 for N rows
    (1/128 at N = 5,000); here γ is one number, the same for both clouds. The reference draws
    landmarks with replacement; here without (a repeated landmark adds nothing). Landmarks of both
    clouds come from generators seeded alike, so identical clouds score exactly 0, and a quantized
    copy of ``reference`` (same rows, same order) is compared on the same landmark rows. The
    reference cloud's RLTs are kept for the next call with the same ``reference``.

    ``details``: ``mrlt_reference`` and ``mrlt_other`` (lists of i_max floats) and
    ``beyond_i_max_reference`` / ``beyond_i_max_other``, the mean fraction of [0, α_max] with
    i_max or more H1 bars alive, which no RLT entry counts (raise ``i_max`` when it is not 0).

    >>> angles = np.random.default_rng(0).uniform(0, 2 * np.pi, size=300)
    >>> circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    >>> blob = np.random.default_rng(1).normal(size=(300, 2))
    >>> metric = TopologicalGeometryScore(n_landmarks=16, gamma=1 / 8, n_repetitions=10)
    >>> metric(circle, circle).value
    0.0
    >>> metric(circle, 1.01 * circle + 0.02).value < 1e-12 < metric(circle, blob).value
    True
    """

    def __init__(
        self,
        n_landmarks: int = 64,
        gamma: float = 1 / 128,
        i_max: int = 100,
        n_repetitions: int = 100,
        seed: int = 0,
    ) -> None:
        self.n_landmarks = check_int(NAME, "n_landmarks", n_landmarks, minimum=3)
        self.gamma = check_number(NAME, "gamma", gamma, minimum=0, exclusive=("minimum",))
        self.i_max = check_int(NAME, "i_max", i_max, minimum=1)
        self.n_repetitions = check_int(NAME, "n_repetitions", n_repetitions, minimum=1)
        self.seed = check_int(NAME, "seed", seed, minimum=0)
        _gudhi()
        self._reference_rlts: tuple[tuple, np.ndarray] | None = None

    def _rlts(self, points: np.ndarray) -> np.ndarray:
        return relative_living_times_sample(
            points, self.n_landmarks, self.gamma, self.i_max, self.n_repetitions, self.seed
        )

    def _reference(self, reference: np.ndarray) -> np.ndarray:
        key = fingerprint(reference)
        if self._reference_rlts is None or self._reference_rlts[0] != key:
            self._reference_rlts = (key, self._rlts(reference))
        return self._reference_rlts[1]

    def __call__(self, reference: Any, other: Any) -> MetricResult:
        reference, other = two_samples(reference, other)
        for name, points in (("reference", reference), ("other", other)):
            if len(points) < self.n_landmarks:
                raise DataError(
                    f"{NAME}: argument `{name}` has {len(points)} rows, fewer than n_landmarks={self.n_landmarks} "
                    f"landmarks to draw from it; lower n_landmarks or give more samples"
                )
        *mrlt_reference, beyond_reference = self._reference(reference).mean(axis=0).tolist()
        *mrlt_other, beyond_other = self._rlts(other).mean(axis=0).tolist()
        value = float(np.sum((np.array(mrlt_reference) - np.array(mrlt_other)) ** 2))
        return MetricResult(
            value,
            {
                "mrlt_reference": mrlt_reference,
                "mrlt_other": mrlt_other,
                "beyond_i_max_reference": beyond_reference,
                "beyond_i_max_other": beyond_other,
            },
        )
