"""CKA: centred kernel alignment of paired features, linear (in feature space) or RBF.

Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited" (ICML); the
unbiased HSIC estimator from Song et al. 2012, "Feature Selection via Dependence Maximization"
(JMLR), as used for CKA by Nguyen et al. 2021, "Do Wide and Deep Networks Learn the Same Things?"
(ICLR).

Takes ``(x: N×d1, y: N×d2)``, row i of both the same sample (for esq: an image's original and
quantised embeddings); higher is more similar, 1 for identical inputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from esq import DataError, MetricResult, WithOptions, check_bool, check_choice, check_int, check_number, paired_features
from esq_metrics.pairwise import squared_distances
from esq_metrics.scatter import Scatter, constant_error, paired_arrays, paired_scatter

KERNEL_ROWS_PER_BLOCK = 256  # rows of an N×N kernel matrix held at a time (2 MiB per 1000 samples)
KERNELS = ("linear", "rbf")


def _hsic(product: float, row_sums: float, total_x: float, total_y: float, rows: int, debiased: bool) -> float:
    """HSIC from sums over two symmetric n × n kernel matrices K, L.

    Biased: tr(KHLH)/(n − 1)² with H = I − 11ᵀ/n, from ``product`` = Σᵢⱼ KᵢⱼLᵢⱼ, ``row_sums`` =
    (K1)·(L1) and ``total_*`` = 1ᵀK1, 1ᵀL1. Debiased (Song et al. 2012), the same sums over K̂, L̂,
    the matrices with zero diagonals:
    [tr(K̂L̂) + 1ᵀK̂1·1ᵀL̂1/((n − 1)(n − 2)) − 2·(K̂1)·(L̂1)/(n − 2)] / (n(n − 3)).
    """
    n = rows
    if not debiased:
        return (product - 2.0 * row_sums / n + total_x * total_y / n**2) / (n - 1) ** 2
    return (product + total_x * total_y / ((n - 1) * (n - 2)) - 2.0 * row_sums / (n - 2)) / (n * (n - 3))


def _linear_hsic(statistics: Scatter, debiased: bool) -> tuple[float, float, float]:
    """(HSIC(x, y), HSIC(x, x), HSIC(y, y)) for K = XcXcᵀ, L = YcYcᵀ, from d × d products.

    With centred columns K1 = 0, so tr(KHLH) = tr(KL) = ‖XcᵀYc‖²_F. For the debiased form the
    zeroed diagonal is diag(a), aᵢ = ‖xᵢ − x̄‖²: tr(K̂L̂) = ‖XcᵀYc‖²_F − a·b, K̂1 = −a and
    1ᵀK̂1 = −Σa = −tr(XcᵀXc), which gives Kornblith et al.'s
    n(n − 3)·HSIC = ‖XcᵀYc‖²_F − n/(n − 2)·a·b + ΣaΣb/((n − 1)(n − 2)).
    """
    traces = {"x": float(np.trace(statistics.xx)), "y": float(np.trace(statistics.yy))}
    pairs = [
        (statistics.xy, statistics.row_norms_xy, "x", "y"),
        (statistics.xx, statistics.row_norms_xx, "x", "x"),
        (statistics.yy, statistics.row_norms_yy, "y", "y"),
    ]
    values = []
    for block, norms, left, right in pairs:
        product = float(np.sum(block * block))
        if debiased:
            values.append(_hsic(product - norms, norms, -traces[left], -traces[right], statistics.rows, True))
        else:
            values.append(_hsic(product, 0.0, 0.0, 0.0, statistics.rows, False))
    return values[0], values[1], values[2]


def median_squared_distance(features: np.ndarray) -> float:
    """The median of the n × n matrix of squared distances between rows, diagonal zeros included.

    NumPy's median (the mean of the two middle values when n² is even) over all n² entries, as
    Kornblith et al.'s reference code (``np.median(sq_distances)``) takes it. Only the n(n − 1)/2
    distances above the diagonal are stored (4·n² bytes): the full matrix holds each twice and n
    zeros, so its k-th smallest entry is 0 for k < n and the ⌊(k − n)/2⌋-th smallest of those.

    >>> median_squared_distance(np.array([[0.0], [1.0], [5.0]]))  # 0, 0, 0, 1, 1, 16, 16, 25, 25
    1.0
    """
    features = features - features.mean(axis=0)  # distances are unchanged, computed more precisely
    n = len(features)
    squared_norms = np.einsum("ij,ij->i", features, features)
    upper = np.empty(n * (n - 1) // 2)
    filled = 0
    for start in range(0, n, KERNEL_ROWS_PER_BLOCK):
        rows = slice(start, min(start + KERNEL_ROWS_PER_BLOCK, n))
        columns = slice(start, n)
        block = squared_distances(features[rows], features[columns], squared_norms[rows], squared_norms[columns])
        for offset in range(rows.stop - rows.start):
            values = block[offset, offset + 1 :]
            upper[filled : filled + len(values)] = values
            filled += len(values)
    middle = [(n * n - 1) // 2, n * n // 2]
    # n ≥ 2 puts both middle positions at or after the n zeros
    ranks = sorted({(position - n) // 2 for position in middle})
    upper.partition(ranks)
    return float(np.mean([upper[(position - n) // 2] for position in middle]))


def _rbf_hsic(x: np.ndarray, y: np.ndarray, gammas: tuple[float, float], debiased: bool) -> tuple[float, float, float]:
    """HSIC of Gaussian kernels k(u, v) = exp(−γ‖u − v‖²), over blocks of rows of the n × n matrices.

    Both HSIC estimators are unchanged when a constant is added to every off-diagonal entry of a
    kernel matrix (and, for the biased one, to every entry), so the sums are taken over
    K − 11ᵀ = expm1(−γD), whose diagonal is exactly 0 and whose entries are small where the
    bandwidth is large: less cancellation in the centring than with K itself.
    """
    n = len(x)
    features = [x - x.mean(axis=0), y - y.mean(axis=0)]
    norms = [np.einsum("ij,ij->i", f, f) for f in features]
    row_sums = [np.zeros(n), np.zeros(n)]
    products = np.zeros(3)  # Σ K'L', Σ K'K', Σ L'L'
    for start in range(0, n, KERNEL_ROWS_PER_BLOCK):
        rows = slice(start, min(start + KERNEL_ROWS_PER_BLOCK, n))
        kernels = []
        for side in (0, 1):
            block = squared_distances(features[side][rows], features[side], norms[side][rows], norms[side])
            block[np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)] = 0.0
            block *= -gammas[side]
            np.expm1(block, out=block)
            row_sums[side][rows] = block.sum(axis=1)
            kernels.append(block)
        products += (np.sum(kernels[0] * kernels[1]), np.sum(kernels[0] ** 2), np.sum(kernels[1] ** 2))
    totals = [float(sums.sum()) for sums in row_sums]
    values = [
        _hsic(float(products[index]), float(row_sums[left] @ row_sums[right]), totals[left], totals[right], n, debiased)
        for index, left, right in ((0, 0, 1), (1, 0, 0), (2, 1, 1))
    ]
    return values[0], values[1], values[2]


class CKA(WithOptions):
    """Centred kernel alignment (Kornblith et al. 2019) of paired features.

    CKA = HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L)) for kernel matrices K of the rows of x and L of y.

    ``kernel="linear"`` (default) is computed in feature space, O(N·(d1 + d2)²) time and
    O((d1 + d2)²) memory: with column-centred Xc, Yc,

        CKA = ‖YcᵀXc‖²_F / (‖XcᵀXc‖_F · ‖YcᵀYc‖_F),

    invariant to orthogonal transforms and isotropic scaling of either side, not to other linear
    maps; in [0, 1].

    ``kernel="rbf"``: Gaussian kernels k(u, v) = exp(−‖u − v‖² / (2σ²)) with, per side, the
    median heuristic of Kornblith et al.'s code: σ² = the median of the N × N matrix of squared
    distances between rows (diagonal zeros included; see :func:`median_squared_distance`), or
    ``sigma`` if given: an absolute bandwidth for both sides (the value then depends on the scale
    of the features; the median heuristic keeps it scale invariant). This needs the N × N Gram
    matrices: they are computed over blocks of rows (O(N² (d1 + d2)) time, O(N·256) memory for
    them plus 4·N² bytes for the median), and more than ``max_samples`` rows (default 5000:
    100 MB for the median) are refused; subsample the rows or raise ``max_samples``.

    ``debiased=False``: HSIC = tr(KHLH)/(N − 1)², H = I − 11ᵀ/N. ``debiased=True``: the unbiased
    HSIC estimator (Song et al. 2012; debiased CKA of Nguyen et al. 2021), for the linear kernel
    also in feature space (its zeroed Gram diagonals are the row norms ‖xᵢ − x̄‖²). Debiased CKA
    lies in [−1, 1]: about 0 for unrelated features, where it can be slightly negative. It needs
    N ≥ 4 (its denominator holds N − 3), the others N ≥ 3.

    ``details``: ``hsic_xy``, ``hsic_xx``, ``hsic_yy`` (the estimates above), ``n``, ``kernel``,
    ``debiased`` and, for the RBF kernel, ``sigma_x``, ``sigma_y``.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(500, 6))
    >>> result = CKA()(x, 3.0 * x[:, ::-1])
    >>> round(result.value, 12), result.details["kernel"]
    (1.0, 'linear')
    >>> round(CKA(kernel="rbf", debiased=True)(x, x + 0.5 * np.random.default_rng(1).normal(size=x.shape)).value, 4)
    0.7849
    """

    def __init__(
        self, kernel: str = "linear", debiased: bool = False, sigma: float | None = None, max_samples: int = 5000
    ) -> None:
        self.kernel = check_choice("cka", "kernel", kernel, KERNELS)
        self.debiased = check_bool("cka", "debiased", debiased)
        self.sigma = None if sigma is None else check_number("cka", "sigma", sigma, minimum=0, exclusive=("minimum",))
        self.max_samples = check_int("cka", "max_samples", max_samples, minimum=4)

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = paired_arrays(x, y, min_rows=4 if self.debiased else 3)
        rows = len(x)
        details: dict[str, Any] = {"n": rows, "kernel": self.kernel, "debiased": self.debiased}
        if self.kernel == "linear":
            statistics = paired_scatter(x, y)
            for name, constant in (("x", statistics.constant_x), ("y", statistics.constant_y)):
                if constant:
                    raise constant_error("cka", name, f"‖{name.upper()}ᵀ{name.upper()}‖ = 0 makes CKA undefined")
            hsic = _linear_hsic(statistics, self.debiased)
        else:
            if rows > self.max_samples:
                raise DataError(
                    f"cka: kernel='rbf' needs the {rows}×{rows} kernel matrices, more than max_samples="
                    f"{self.max_samples} rows allow (about {4 * rows * rows / 2**20:.0f} MiB for the median heuristic "
                    f"and O(N²·d) time); subsample the rows, raise `max_samples`, or use kernel='linear'"
                )
            x, y = paired_features(x, y, min_rows=4 if self.debiased else 3)
            for name, features in (("x", x), ("y", y)):
                if np.all(features == features[0]):
                    raise constant_error("cka", name, "its centred kernel matrix is 0, which makes CKA undefined")
            sigmas = []
            for name, features in (("x", x), ("y", y)):
                if self.sigma is None:
                    median = median_squared_distance(features)
                    if median == 0:
                        raise DataError(
                            f"cka: the median heuristic gives σ = 0 for `{name}` (at least half of the pairs of rows "
                            "are identical); pass an explicit `sigma`"
                        )
                    sigmas.append(math.sqrt(median))
                else:
                    sigmas.append(self.sigma)
            details.update(sigma_x=sigmas[0], sigma_y=sigmas[1])
            hsic = _rbf_hsic(x, y, (0.5 / sigmas[0] ** 2, 0.5 / sigmas[1] ** 2), self.debiased)
        hsic_xy, hsic_xx, hsic_yy = hsic
        details.update(hsic_xy=hsic_xy, hsic_xx=hsic_xx, hsic_yy=hsic_yy)
        for name, value in (("x", hsic_xx), ("y", hsic_yy)):
            if not value > 0:
                raise DataError(
                    f"cka: the HSIC of `{name}` with itself is {value:g}, not positive, so CKA (divided by its root) "
                    "is undefined; the features hardly vary"
                )
        return MetricResult(float(hsic_xy / math.sqrt(hsic_xx * hsic_yy)), details)
