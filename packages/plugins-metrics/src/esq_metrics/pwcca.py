"""PWCCA: projection-weighted canonical correlation analysis of paired features.

Morcos et al. 2018, "Insights on representational similarity in neural networks with canonical
correlation" (NeurIPS), and its reference code, google/svcca (``cca_core.py``, ``pwcca.py``).

Takes ``(x: N×d1, y: N×d2)``, row i of both the same sample; higher is more similar, 1 − O(ε)
for identical inputs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from esq import ConfigError, DataError, MetricResult, WithOptions, check_choice, check_int, check_number, did_you_mean
from esq_metrics.scatter import constant_error, paired_arrays, paired_scatter

log = logging.getLogger("esq.metrics")

METHODS = ("svcca_reference", "paper")
MAX_COMPONENTS_WORDS = ("auto", "none")


def check_max_components(value: Any) -> int | str:
    """``max_components`` as an integer ≥ 1, ``"auto"`` or ``"none"`` (``None`` is ``"none"``), or a ConfigError.

    >>> check_max_components(None), check_max_components("auto"), check_max_components(12)
    ('none', 'auto', 12)
    """
    if value is None:
        return "none"
    if isinstance(value, str):
        if value in MAX_COMPONENTS_WORDS:
            return value
        hint = did_you_mean(value, list(MAX_COMPONENTS_WORDS))
        raise ConfigError(
            f"pwcca: max_components must be an integer at least 1, 'auto' (reduce only dependent sides) or 'none' "
            f"(never reduce){hint}, got {value!r}"
        )
    try:
        return check_int("pwcca", "max_components", value, minimum=1)
    except ConfigError as error:
        raise ConfigError(f"{error}; or 'auto' (the default) or 'none' (never reduce)") from None


RANK_TOLERANCE = 1e-10  # eigenvalues of a scatter below this fraction of its largest count as 0


def live_rank(scatter: np.ndarray, epsilon: float) -> tuple[int, int]:
    """(live, rank): the columns "remove small" keeps (variance ≥ ``epsilon`` × the largest absolute
    entry of the scatter) and the numerical rank of their scatter (eigenvalues above
    ``RANK_TOLERANCE`` × the largest).

    >>> features = np.random.default_rng(0).normal(size=(10, 3))
    >>> copies = features @ np.ones((3, 4))  # four equal columns
    >>> live_rank(features.T @ features, 1e-6), live_rank(copies.T @ copies, 0.0)
    ((3, 3), (4, 1))
    """
    live = np.abs(np.diagonal(scatter)) >= epsilon * np.max(np.abs(scatter))
    eigenvalues = np.linalg.eigvalsh(scatter[np.ix_(live, live)])
    return int(live.sum()), int(np.sum(eigenvalues > RANK_TOLERANCE * eigenvalues[-1]))


def auto_sizes(
    rows: int, widths: tuple[int, int], ranks: tuple[tuple[int, int], tuple[int, int]], epsilon: float, method: str
) -> tuple[int, int]:
    """``max_components="auto"``: each side's dimensions, reduced only where the reference gives no number.

    ``ranks`` holds (live, rank) per side (:func:`live_rank`). A side with d ≥ N, where the
    reference refuses x (``assert`` d < N) and CCA is degenerate, keeps min(rank, (N − 1) // 2)
    principal components. A narrower side whose live columns are linearly dependent (repeated
    rows: a bootstrap replicate, a quantiser's few codes) keeps its rank, its whole span, which
    changes no canonical correlation, and only where the reference's value is undefined: at
    ``epsilon=0`` (a singular covariance), or, for ``method="svcca_reference"``, when it is the side
    that provides the weights (fewer kept columns, x on a tie), whose orthonormal basis of
    dependent columns is set by rounding. Elsewhere a dependent side is kept whole, as the
    reference keeps it.

    >>> auto_sizes(300, (200, 40), ((200, 200), (40, 40)), 1e-6, "svcca_reference")
    (200, 40)
    >>> auto_sizes(30, (40, 12), ((40, 29), (12, 12)), 1e-6, "paper")
    (14, 12)
    >>> auto_sizes(500, (64, 64), ((64, 64), (64, 15)), 1e-6, "svcca_reference")  # x gives the weights
    (64, 64)
    >>> auto_sizes(500, (64, 64), ((64, 15), (64, 64)), 1e-6, "svcca_reference")  # x gives them, dependent
    (15, 64)
    """
    sizes = [
        min(rank, (rows - 1) // 2) if width >= rows else width for width, (_, rank) in zip(widths, ranks, strict=True)
    ]
    whole = [size == width for size, width in zip(sizes, widths, strict=True)]
    dependent = [rank < live for live, rank in ranks]
    kept = [live if side_whole else size for side_whole, size, (live, _) in zip(whole, sizes, ranks, strict=True)]
    weighting = 0 if kept[0] <= kept[1] else 1
    for side in (0, 1):
        undefined = epsilon == 0 or (method == "svcca_reference" and side == weighting)
        if whole[side] and dependent[side] and undefined:
            sizes[side] = ranks[side][1]
    return sizes[0], sizes[1]


def reduced_sizes(
    rows: int, widths: tuple[int, int], max_components: int | str, auto: tuple[int, int]
) -> tuple[int, int]:
    """The dimensions each side keeps before CCA: its principal components under ``max_components``.

    ``"auto"``: ``auto`` (see :func:`auto_sizes`). ``"none"``: never reduced. An integer k: min(d, k)
    for each side, which refuses k above both widths (a k that reduces nothing is a mistaken
    value, not a choice).

    >>> reduced_sizes(30, (40, 12), 20, (0, 0)), reduced_sizes(30, (40, 12), "none", (0, 0))
    ((20, 12), (40, 12))
    """
    if max_components == "none":
        return widths
    if max_components == "auto":
        return auto
    if max_components > max(widths):
        raise ConfigError(
            f"pwcca: max_components={max_components} is more than the features' dimensions (x {widths[0]}, "
            f"y {widths[1]}), so it reduces nothing; use at most {max(widths)}, or max_components='none'"
        )
    return min(widths[0], max_components), min(widths[1], max_components)


def small_sample_warning(rows: int, sizes: list[int]) -> str | None:
    """The warning for too few samples for the widths CCA sees, or None when N ≥ 2d and d1 + d2 < N.

    Unrelated random features of widths p, q on N samples have a top canonical correlation near
    √(a(1 − b)) + √(b(1 − a)), a = p/N, b = q/N (its square is the upper edge of Wachter's 1980
    limit law): 1 when p + q ≥ N, and already high when the wider side has more than N/2 columns
    (0.99 for p = q = 0.42·N). With p + q ≥ N, p + q − (N − 1) correlations are 1 for any data.

    >>> small_sample_warning(600, [200, 100]) is None
    True
    >>> small_sample_warning(100, [60, 5])[:80]
    "pwcca: N=100 samples are too few for CCA of x's 60 and y's 5 dimensions (it need"
    """
    widest, total = max(sizes), sum(sizes)
    if rows >= 2 * widest and total < rows:
        return None
    a, b = min(sizes[0] / rows, 1.0), min(sizes[1] / rows, 1.0)
    chance = min(1.0, math.sqrt(a * (1 - b)) + math.sqrt(b * (1 - a))) if total < rows else 1.0
    forced = max(0, total - (rows - 1))
    exact = f"; {forced} of them {'is' if forced == 1 else 'are'} 1 whatever the data (d_x + d_y ≥ N)" if forced else ""
    needed = max(2 * widest, total + 1)
    return (
        f"pwcca: N={rows} samples are too few for CCA of x's {sizes[0]} and y's {sizes[1]} dimensions (it needs "
        "N ≥ 2d and N > d_x + d_y): it overfits, unrelated random features already reach a top canonical "
        f"correlation of about {chance:.2f}{exact}, so the value is biased up; use at least {needed} samples, "
        f"or max_components={max(1, (rows - 1) // 2)} (each side's principal components)"
    )


def reduction_warning(rows: int, sizes: list[int], kept: list[int], max_components: Any) -> str | None:
    """The warning for a side ``auto`` reduced because d ≥ N (where the reference refuses), or None.

    >>> reduction_warning(10, [32, 8], [4, 8], "auto")[:78]
    "pwcca: x's 32 dimensions are at least N=10 samples, where svcca's reference re"
    >>> reduction_warning(10, [32, 8], [4, 8], 4) is None
    True
    """
    if max_components != "auto":
        return None
    # a narrower side cut to its rank loses nothing: only a side as wide as the samples is worth a word
    cut = [
        f"{side}'s {size} dimensions"
        for side, size, left in zip("xy", sizes, kept, strict=True)
        if left < size and size >= rows
    ]
    if not cut:
        return None
    return (
        f"pwcca: {' and '.join(cut)} are at least N={rows} samples, where "
        f"svcca's reference refuses; CCA ran on {kept[0]} and {kept[1]} leading principal components instead, so "
        "the value is not CCA's on the full features; use more samples than dimensions, or choose with "
        "max_components"
    )


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

    CCA needs more samples than dimensions: with N − 1 ≤ d every canonical correlation is 1, and
    below N = 2d unrelated random features already correlate strongly. ``max_components`` chooses
    whether a side is first reduced to its leading principal components (the centred scores
    Xc·Vk, from the d × d scatter's eigenvectors), which the reference never does:

    - ``"auto"`` (default): a side is reduced only where the reference gives no number (see
      :func:`auto_sizes`): a side with d ≥ N, where the reference refuses x (its ``assert``
      d < N) and CCA is degenerate, keeps min(rank, (N − 1) // 2) components; a narrower side
      whose live columns are linearly dependent (rows repeat: a bootstrap replicate holds about
      0.63·N distinct rows, a quantiser's output as many as it has codes) keeps its rank, its
      whole span, which changes no canonical correlation, when it provides the reference's
      weights (whose orthonormal basis of dependent columns is set by rounding) or at
      ``epsilon=0`` (a singular covariance). Everywhere else nothing is reduced: the value is the
      reference's wherever the reference gives one.
    - ``"none"`` (or ``None``): never reduce; the reference's number for any shape it accepts.
    - an integer k: each side keeps min(d, k) components (k above both widths is a ConfigError).
      Reducing each side separately keeps only each side's top-k variance directions, so the
      result is no longer invariant to invertible linear maps, and a direction two sides share
      but neither emphasises is lost.

    When N < 2d or d_x + d_y ≥ N for the widths CCA sees, the value is computed and a warning (the
    sizes, the top canonical correlation random features would reach, what to do) is logged on
    the ``esq.metrics`` logger once per metric object and sizes, and kept in ``details["warning"]``.

    ``details`` holds ``components`` (the dimensions after that reduction), ``kept`` (the columns
    kept by "remove small"), ``weights_from`` (``"x"`` or ``"y"``), ``mean_cca`` (the unweighted mean
    of ρ, plain mean CCA similarity), ``canonical_correlations``, ``weights``, ``n``, ``method`` and
    ``max_components``. Without a reduction the canonical correlations are invariant to invertible
    linear maps of either side (up to the ε regularisation), and so is PWCCA under maps of the
    side that does not provide the weights; the weights are not invariant to maps of their side.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> x = generator.normal(size=(1000, 5))
    >>> result = PWCCA()(x, x @ generator.normal(size=(5, 5)) + 0.3 * generator.normal(size=(1000, 5)))
    >>> round(result.value, 4), result.details["weights_from"], result.details["components"]
    (0.8662, 'x', [5, 5])
    """

    def __init__(
        self, epsilon: float = 1e-6, method: str = "svcca_reference", max_components: int | str | None = "auto"
    ) -> None:
        self.epsilon = check_number("pwcca", "epsilon", epsilon, minimum=0, maximum=1, exclusive=("maximum",))
        self.method = check_choice("pwcca", "method", method, METHODS)
        self.max_components = check_max_components(max_components)
        self._warned: set[str] = set()  # bootstrap replicates repeat the same sizes: one warning for them

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = paired_arrays(x, y, min_rows=3)
        statistics = paired_scatter(x, y)
        for name, constant in (("x", statistics.constant_x), ("y", statistics.constant_y)):
            if constant:
                raise constant_error("pwcca", name, "every canonical correlation is undefined")
        rows = statistics.rows
        scatter, means = statistics.scatter, [statistics.mean_x, statistics.mean_y]
        sizes = widths = [statistics.split, len(scatter) - statistics.split]
        auto = (sizes[0], sizes[1])
        if self.max_components == "auto":
            ranks = (live_rank(statistics.xx, self.epsilon), live_rank(statistics.yy, self.epsilon))
            auto = auto_sizes(rows, auto, ranks, self.epsilon, self.method)
        reduced = reduced_sizes(rows, (sizes[0], sizes[1]), self.max_components, auto)
        if list(reduced) != sizes:
            # a reduced side becomes its principal component scores, which are centred (means 0); a side
            # left whole keeps its columns and means, so its weights are the reference's
            blocks_in = ((statistics.xx, sizes[0], reduced[0]), (statistics.yy, sizes[1], reduced[1]))
            axes = [_principal_axes(block, kept) if kept < size else np.eye(size) for block, size, kept in blocks_in]
            rotation = scipy.linalg.block_diag(*axes)
            scatter = rotation.T @ scatter @ rotation
            scatter = (scatter + scatter.T) / 2
            means = [
                mean if kept == size else np.zeros(kept) for mean, (_, size, kept) in zip(means, blocks_in, strict=True)
            ]
            sizes = list(reduced)
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
            "max_components": self.max_components,
        }
        warning = small_sample_warning(rows, details["kept"]) or reduction_warning(
            rows, widths, details["kept"], self.max_components
        )
        if warning is not None:
            details["warning"] = warning
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning(warning)
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
