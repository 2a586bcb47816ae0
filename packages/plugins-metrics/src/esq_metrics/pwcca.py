"""PWCCA: projection-weighted canonical correlation analysis of paired features.

Morcos et al. 2018, "Insights on representational similarity in neural networks with canonical
correlation" (NeurIPS), and its reference code, google/svcca (``cca_core.py``, ``pwcca.py``).

Takes ``(x: N×d1, y: N×d2)``, row i of both the same sample; higher is more similar, 1 − O(ε)
for identical inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from esq import DataError, MetricResult, WithOptions, check_choice, check_int, check_number
from esq_metrics.scatter import constant_error, paired_arrays, paired_scatter

METHODS = ("svcca_reference", "paper")


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


class PWCCA(WithOptions):
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
        self.epsilon = check_number("pwcca", "epsilon", epsilon, minimum=0, maximum=1, exclusive=("maximum",))
        self.method = check_choice("pwcca", "method", method, METHODS)
        self.max_components = (
            None if max_components is None else check_int("pwcca", "max_components", max_components, minimum=1)
        )

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = paired_arrays(x, y, min_rows=3)
        statistics = paired_scatter(x, y)
        for name, constant in (("x", statistics.constant_x), ("y", statistics.constant_y)):
            if constant:
                raise constant_error("pwcca", name, "every canonical correlation is undefined")
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
