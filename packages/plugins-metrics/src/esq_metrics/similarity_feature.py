"""Similarity of paired features, computed in feature space: CKA and PWCCA.

Each metric takes ``(x: N×d1, y: N×d2)`` where row i of both describes the same sample (for
esq: an image's original and quantised embeddings). Shapes are checked with
:func:`esq.validation.paired_features`; the rows are then read in blocks of ``ROWS_PER_BLOCK``,
each checked for NaN/Inf and converted to float64 on its own, so a float32 input is never copied
to float64 whole and memory stays O((d1 + d2)²) whatever N. Both are higher-is-better, 1 for
identical inputs. The component returns ``MetricResult(value, details)``; the plain function of the
same name returns the float.

- CKA, Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited" (ICML);
  the unbiased HSIC estimator from Song et al. 2012, "Feature Selection via Dependence
  Maximization" (JMLR), as used for CKA by Nguyen et al. 2021, "Do Wide and Deep Networks Learn
  the Same Things?" (ICLR).
- PWCCA, Morcos et al. 2018, "Insights on representational similarity in neural networks with
  canonical correlation" (NeurIPS), and its reference code, google/svcca (``cca_core.py``,
  ``pwcca.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from esq import ConfigError, DataError, MetricResult
from esq import as_matrix, paired_features

ROWS_PER_BLOCK = 8192  # rows converted to float64 at a time: O(8192·(d1 + d2)) extra memory, not O(N·d)
KERNEL_ROWS_PER_BLOCK = 256  # rows of an N×N kernel matrix held at a time (2 MiB per 1000 samples)
KERNELS = ("linear", "rbf")
PWCCA_METHODS = ("svcca_reference", "paper")


def _integer(metric: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{metric}: {name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _boolean(metric: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{metric}: {name} must be true or false, got {value!r}")
    return value


def _choice(metric: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{metric}: {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _paired_arrays(x: Any, y: Any, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as arrays of their own dtype (float32 stays float32), shapes checked.

    A shape that :func:`paired_features` would refuse is handed to it, so the error is the one
    every similarity metric raises; NaN and Inf are found block by block in :func:`_scatter`.
    """
    arrays = []
    for array in (x, y):
        if hasattr(array, "detach"):  # a torch tensor: float32 and float64 kept, other dtypes to float64
            tensor = array.detach().cpu()
            array = (
                tensor.numpy() if str(tensor.dtype) in ("torch.float32", "torch.float64") else tensor.double().numpy()
            )
        arrays.append(np.asarray(array))
    x, y = arrays
    well_formed = x.ndim == y.ndim == 2 and len(x) == len(y) >= min_rows and x.shape[1] >= 1 and y.shape[1] >= 1
    if not well_formed:
        return paired_features(x, y, min_rows)  # raises the DataError that says what is wrong
    return x, y


def _row_blocks(rows: int) -> Iterator[slice]:
    return (slice(start, start + ROWS_PER_BLOCK) for start in range(0, rows, ROWS_PER_BLOCK))


@dataclass(frozen=True)
class _Scatter:
    """Sufficient statistics of paired features, all float64: ``scatter`` is ZᵀZ for the
    column-centred Z = [X − x̄, Y − ȳ]; a_i = ‖xᵢ − x̄‖², b_i = ‖yᵢ − ȳ‖² enter only as the sums
    Σ aᵢbᵢ, Σ aᵢ², Σ bᵢ² (what the debiased HSIC needs)."""

    rows: int
    mean_x: np.ndarray
    mean_y: np.ndarray
    scatter: np.ndarray
    constant_x: bool
    constant_y: bool
    row_norms_xy: float
    row_norms_xx: float
    row_norms_yy: float

    @property
    def split(self) -> int:
        return len(self.mean_x)

    @property
    def xx(self) -> np.ndarray:
        return self.scatter[: self.split, : self.split]

    @property
    def yy(self) -> np.ndarray:
        return self.scatter[self.split :, self.split :]

    @property
    def xy(self) -> np.ndarray:
        return self.scatter[: self.split, self.split :]


def _scatter(x: np.ndarray, y: np.ndarray) -> _Scatter:
    """Two passes over blocks of rows: the means (and whether a side is constant), then the
    centred cross-products, so no cancellation between Σzzᵀ and N·z̄z̄ᵀ can occur."""
    rows, split = len(x), x.shape[1]
    statistics = []
    for name, array in (("x", x), ("y", y)):
        total = np.zeros(array.shape[1])
        low, high = np.full(array.shape[1], np.inf), np.full(array.shape[1], -np.inf)
        for block in _row_blocks(rows):
            values = as_matrix(name, array[block], min_rows=1)  # float64, finite
            total += values.sum(axis=0)
            np.minimum(low, values.min(axis=0), out=low)
            np.maximum(high, values.max(axis=0), out=high)
        statistics.append((total / rows, bool(np.all(low == high))))
    (mean_x, constant_x), (mean_y, constant_y) = statistics
    scatter = np.zeros((split + y.shape[1], split + y.shape[1]))
    centred = np.empty((min(rows, ROWS_PER_BLOCK), len(scatter)))
    row_norms = np.zeros(3)
    for block in _row_blocks(rows):
        size = len(x[block])
        np.subtract(x[block], mean_x, out=centred[:size, :split])
        np.subtract(y[block], mean_y, out=centred[:size, split:])
        values = centred[:size]
        scatter += values.T @ values
        a = np.einsum("ij,ij->i", values[:, :split], values[:, :split])
        b = np.einsum("ij,ij->i", values[:, split:], values[:, split:])
        row_norms += (a @ b, a @ a, b @ b)
    scatter = (scatter + scatter.T) / 2  # exactly symmetric, whatever the BLAS did
    return _Scatter(rows, mean_x, mean_y, scatter, constant_x, constant_y, *map(float, row_norms))


def _constant_error(metric: str, name: str, why: str) -> DataError:
    return DataError(
        f"{metric}: `{name}` is constant (every row the same), so it has no variance after centring and "
        f"{why}; check that the features are not all equal (e.g. a quantiser that collapsed to one code)"
    )


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


def _linear_hsic(statistics: _Scatter, debiased: bool) -> tuple[float, float, float]:
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


def _squared_distances(features: np.ndarray, squared_norms: np.ndarray, rows: slice, columns: slice) -> np.ndarray:
    block = features[rows] @ features[columns].T
    block *= -2.0
    block += squared_norms[rows, None]
    block += squared_norms[None, columns]
    np.maximum(block, 0.0, out=block)  # a squared distance; rounding can leave it at -1e-16
    return block


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
        block = _squared_distances(features, squared_norms, rows, slice(start, n))
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
            block = _squared_distances(features[side], norms[side], rows, slice(0, n))
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


class CKA:
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
        self.kernel = _choice("cka", "kernel", kernel, KERNELS)
        self.debiased = _boolean("cka", "debiased", debiased)
        if sigma is not None and (
            isinstance(sigma, bool) or not isinstance(sigma, int | float) or not math.isfinite(sigma) or sigma <= 0
        ):
            raise ConfigError(f"cka: sigma must be a positive number (or None for the median heuristic), got {sigma!r}")
        self.sigma = None if sigma is None else float(sigma)
        self.max_samples = _integer("cka", "max_samples", max_samples, 4)

    @property
    def options(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "debiased": self.debiased, "sigma": self.sigma, "max_samples": self.max_samples}

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = _paired_arrays(x, y, min_rows=4 if self.debiased else 3)
        rows = len(x)
        details: dict[str, Any] = {"n": rows, "kernel": self.kernel, "debiased": self.debiased}
        if self.kernel == "linear":
            statistics = _scatter(x, y)
            for name, constant in (("x", statistics.constant_x), ("y", statistics.constant_y)):
                if constant:
                    raise _constant_error("cka", name, f"‖{name.upper()}ᵀ{name.upper()}‖ = 0 makes CKA undefined")
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
                    raise _constant_error("cka", name, "its centred kernel matrix is 0, which makes CKA undefined")
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


def cka(x: Any, y: Any, **options: Any) -> float:
    """The plain-function form of :class:`CKA`: ``cka(x, y)`` returns the float.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> x = generator.normal(size=(500, 6))
    >>> cka(x, x + 0.1 * generator.normal(size=x.shape)) > cka(x, generator.normal(size=x.shape))
    True
    """
    return CKA(**options)(x, y).value


def _principal_axes(scatter: np.ndarray, components: int) -> np.ndarray:
    """The ``components`` leading eigenvectors of a scatter matrix (its principal axes), d × k."""
    _, vectors = np.linalg.eigh(scatter)
    return vectors[:, ::-1][:, :components]


def _inverse_root(metric: str, name: str, covariance: np.ndarray, epsilon: float) -> np.ndarray:
    """(Σ)^−½ by a symmetric eigendecomposition; the reference takes pinv, then its eigen root:
    the same for a positive definite Σ, which ε > 0 guarantees (Σ + εI)."""
    eigenvalues, vectors = np.linalg.eigh(covariance)
    if not eigenvalues[0] > len(eigenvalues) * np.finfo(np.float64).eps * eigenvalues[-1]:
        raise DataError(
            f"{metric}: the covariance of the kept columns of `{name}` is singular (linearly dependent columns) "
            f"and epsilon={epsilon:g} does not regularise it; use epsilon > 0 (default 1e-6) or a smaller "
            "max_components"
        )
    return (vectors / np.sqrt(eigenvalues)) @ vectors.T


@dataclass(frozen=True)
class _CanonicalSide:
    """One side after the reference's preprocessing: kept columns, scatter, means, whitening."""

    keep: np.ndarray
    scatter: np.ndarray  # centred XᵀX of the kept columns, not rescaled
    mean: np.ndarray
    whitening: np.ndarray  # (Σ/max|Σ| + εI)^−½ over the kept columns


class PWCCA:
    """Projection-weighted CCA (Morcos et al. 2018): Σᵢ αᵢρᵢ / Σᵢ αᵢ over canonical correlations ρᵢ.

    The canonical correlations come from the steps of the reference code (google/svcca,
    ``cca_core.get_cca_similarity``), in float64 on d × d covariances (O(N·(d1 + d2)²) time,
    O((d1 + d2)²) memory):

    1. the (d1 + d2)² covariance of [x, y] (divisor N − 1); Σxx is divided by its largest absolute
       entry mx, Σyy by its my, Σxy by √(mx·my);
    2. "remove small": columns whose rescaled variance (diagonal) is below ``epsilon`` are dropped
       (constant, dead columns of quantised features), separately on each side;
    3. ``epsilon`` is added to both diagonals, so it is relative: 1e-6 of the largest variance;
    4. the whitened cross-covariance (Σxx + εI)^−½ Σxy (Σyy + εI)^−½ = U diag(ρ) Vᵀ (SVD).

    Then ``method`` chooses the weights αᵢ:

    - ``"svcca_reference"`` (default), the published numbers' code (``pwcca.compute_pwcca``): the
      side with fewer kept columns (x on a tie) provides them. For x, D = Xc U + 1x̄ᵀ (the centred
      kept columns rotated by U, *not* whitened, then each column's mean added back); P is an
      orthonormal basis of D's columns in order (``np.linalg.qr``); αⱼ = Σᵢ |⟨Pⱼ, xᵢ⟩| over the kept
      columns xᵢ of x, *not* centred. The weighted mean is over ρ: that function returns
      ``(pwcca_mean, weights, cca_coefs)``; here they are the value, ``details["weights"]`` and
      ``details["canonical_correlations"]``. Computed without the N × k matrix D: DᵀD =
      UᵀSU + N x̄x̄ᵀ and DᵀX = UᵀS + N x̄x̄ᵀ (S the centred scatter), P = DR⁻¹ with RᵀR = DᵀD (Cholesky,
      equal to QR's R up to column signs, which |·| removes), so PᵀX = R⁻ᵀDᵀX; columns of D nearly
      in the span of the ones before them, where that basis is set by rounding, are refused with
      a DataError (see :func:`_reference_weights`). When y provides the
      weights, the reference's branch uses ``acts1`` (x's rows) with y's column mask, means and
      directions: it raises an IndexError when d1 ≠ d2 and mixes the two sides otherwise
      (google/svcca pull request #9, not merged). Here that branch uses y throughout, as intended.
    - ``"paper"``, Morcos et al.'s definition: αᵢ = Σⱼ |⟨hᵢ, xⱼ⟩| with hᵢ = Xc(Σxx + εI)^−½uᵢ the
      canonical variates of x (the first argument; the min(kx, ky) with a correlation), each
      scaled to unit length, and xⱼ the kept columns of x. It differs from the reference in
      projecting onto the canonical variates themselves rather than onto a Gram–Schmidt basis of
      the un-whitened rotated columns (with their means added back), and in always weighting by x.

    With ``epsilon`` > 0 each ρ is shrunk: identical inputs give ρᵢ = λᵢ/(λᵢ + ε) for the
    eigenvalues λᵢ of the rescaled Σxx, so a value 1 − O(ε/λ_min) instead of 1. ``epsilon=0``
    drops no column and adds nothing; a singular covariance (constant or linearly dependent
    columns) is then refused with a DataError. The reference at ``epsilon=0`` (its default) keeps
    dead columns, takes the pseudo-inverse and its eigen square root, whose rounding-negative
    eigenvalues give NaN, so ``np.linalg.svd`` often raises "SVD did not converge" (in 3 of the
    tests' 5 random pairs with one dead column; the other 2 return a value).

    CCA needs more samples than dimensions: with N − 1 ≤ d every canonical correlation is 1. Each
    side is therefore first reduced to its leading min(d, ``max_components``, N // 2) principal
    components (the centred scores Xc·Vk, computed from the d × d scatter's eigenvectors): with the
    default ``max_components=None``, only sides with d > N // 2 are reduced. ``details`` holds
    ``components`` (the dimensions after that reduction), ``kept`` (the columns kept by "remove
    small"), ``weights_from`` (``"x"`` or ``"y"``), ``mean_cca`` (the unweighted mean of ρ, plain mean
    CCA similarity), ``canonical_correlations``, ``weights``, ``n`` and ``method``.
    The canonical correlations are invariant to invertible linear maps of either side (up to the
    ε regularisation); the weights are not invariant to maps of the side that provides them.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> x = generator.normal(size=(1000, 5))
    >>> result = PWCCA()(x, x @ generator.normal(size=(5, 5)) + 0.3 * generator.normal(size=(1000, 5)))
    >>> round(result.value, 4), result.details["weights_from"], result.details["components"]
    (0.8662, 'x', [5, 5])
    """

    def __init__(
        self, epsilon: float = 1e-6, method: str = "svcca_reference", max_components: int | None = None
    ) -> None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 <= epsilon < 1:
            raise ConfigError(
                f"pwcca: epsilon must be a number in [0, 1) (relative to the largest variance), got {epsilon!r}"
            )
        self.epsilon = float(epsilon)
        self.method = _choice("pwcca", "method", method, PWCCA_METHODS)
        self.max_components = None if max_components is None else _integer("pwcca", "max_components", max_components, 1)

    @property
    def options(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "method": self.method, "max_components": self.max_components}

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = _paired_arrays(x, y, min_rows=3)
        statistics = _scatter(x, y)
        for name, constant in (("x", statistics.constant_x), ("y", statistics.constant_y)):
            if constant:
                raise _constant_error("pwcca", name, "every canonical correlation is undefined")
        rows = statistics.rows
        limit = rows // 2 if self.max_components is None else min(self.max_components, rows // 2)
        scatter, means = statistics.scatter, [statistics.mean_x, statistics.mean_y]
        sizes = [statistics.split, len(scatter) - statistics.split]
        if any(size > limit for size in sizes):
            # principal component scores are centred: their means are 0
            axes = [
                _principal_axes(block, min(size, limit))
                for block, size in ((statistics.xx, sizes[0]), (statistics.yy, sizes[1]))
            ]
            rotation = scipy.linalg.block_diag(*axes)
            scatter = rotation.T @ scatter @ rotation
            scatter = (scatter + scatter.T) / 2
            means = [np.zeros(axes[0].shape[1]), np.zeros(axes[1].shape[1])]
            sizes = [axes[0].shape[1], axes[1].shape[1]]
        covariance = scatter / (rows - 1)
        split = sizes[0]
        blocks = {
            "xx": (covariance[:split, :split], scatter[:split, :split]),
            "yy": (covariance[split:, split:], scatter[split:, split:]),
        }
        largest = {key: float(np.max(np.abs(block[0]))) for key, block in blocks.items()}
        sides = []
        for key, name, mean in (("xx", "x", means[0]), ("yy", "y", means[1])):
            rescaled = blocks[key][0] / largest[key]
            keep = np.abs(np.diagonal(rescaled)) >= self.epsilon
            kept = rescaled[np.ix_(keep, keep)] + self.epsilon * np.eye(int(keep.sum()))
            whitening = _inverse_root("pwcca", name, kept, self.epsilon)
            sides.append(_CanonicalSide(keep, blocks[key][1][np.ix_(keep, keep)], mean[keep], whitening))
        side_x, side_y = sides
        cross = covariance[:split, split:][np.ix_(side_x.keep, side_y.keep)] / math.sqrt(largest["xx"] * largest["yy"])
        left, singular_values, right = np.linalg.svd(side_x.whitening @ cross @ side_y.whitening, full_matrices=False)
        correlations = np.abs(singular_values)
        if self.method == "paper":
            weights_from = "x"
            weights = _paper_weights(side_x, left)
        elif len(side_x.mean) <= len(side_y.mean):
            weights_from = "x"
            weights = _reference_weights(side_x, left, rows, "x")
        else:
            weights_from = "y"
            weights = _reference_weights(side_y, right.T, rows, "y")
        weights = weights / weights.sum()
        details = {
            "n": rows,
            "method": self.method,
            "components": sizes,
            "kept": [len(side_x.mean), len(side_y.mean)],
            "weights_from": weights_from,
            "mean_cca": float(correlations.mean()),
            "canonical_correlations": correlations.tolist(),
            "weights": weights.tolist(),
        }
        return MetricResult(float(weights @ correlations), details)


def _reference_weights(side: _CanonicalSide, directions: np.ndarray, rows: int, name: str) -> np.ndarray:
    """``compute_pwcca``'s Σᵢ |Pᵀaᵢ| for P = qr(Ac·C + 1μᵀ), from k × k products only.

    Rounding in DᵀD is about ε_float64·max‖Dⱼ‖², so the Cholesky factor's Rⱼⱼ² (the squared length
    of the part of column j outside the span of the columns before it) is accurate only well
    above that: columns with Rⱼⱼ² ≤ 1e-10·max‖Dⱼ‖² (a part shorter than 1e-5 of the longest column)
    are taken as linearly dependent, where the reference's QR basis is set by rounding, and refused.
    """
    shift = rows * np.outer(side.mean, side.mean)
    gram = directions.T @ side.scatter @ directions + shift  # DᵀD
    gram = (gram + gram.T) / 2
    projections = directions.T @ side.scatter + shift  # DᵀA
    try:
        upper = scipy.linalg.cholesky(gram, lower=False)
        dependent = bool(np.any(np.diagonal(upper) ** 2 <= 1e-10 * np.diagonal(gram).max()))
    except np.linalg.LinAlgError:
        dependent = True
    if dependent:
        raise DataError(
            f"pwcca: the kept columns of `{name}` are (nearly) linearly dependent, so the reference's orthonormal "
            "basis of them is undefined; reduce the dimension with max_components, or use method='paper'"
        )
    return np.abs(scipy.linalg.solve_triangular(upper, projections, trans="T")).sum(axis=1)


def _paper_weights(side: _CanonicalSide, directions: np.ndarray) -> np.ndarray:
    """Σⱼ |⟨hᵢ/‖hᵢ‖, xⱼ⟩| for the canonical variates hᵢ = Xc·W·uᵢ (centred, so xⱼ's mean drops out).

    A variate of squared length below 1e-12 of the longest is a direction in the null space of
    linearly dependent columns (Xc·v = 0): it exists only through the ε regularisation, has no
    projection on any column and gets weight 0.
    """
    variates = side.whitening @ directions  # hᵢ = Xc·variates[:, i]
    inner = variates.T @ side.scatter  # ⟨hᵢ, xⱼ⟩
    squared_lengths = np.einsum("ij,ji->i", inner, variates)  # ‖hᵢ‖² = variatesᵢᵀ S variatesᵢ
    present = squared_lengths > 1e-12 * squared_lengths.max()
    weights = np.zeros(len(squared_lengths))
    weights[present] = np.abs(inner[present]).sum(axis=1) / np.sqrt(squared_lengths[present])
    return weights


def pwcca(x: Any, y: Any, **options: Any) -> float:
    """The plain-function form of :class:`PWCCA`: ``pwcca(x, y)`` returns the float.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> x = generator.normal(size=(1000, 5))
    >>> pwcca(x, x + 0.1 * generator.normal(size=x.shape)) > pwcca(x, generator.normal(size=x.shape))
    True
    """
    return PWCCA(**options)(x, y).value
