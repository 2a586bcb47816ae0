"""FID: the Fréchet distance between Gaussian fits of two samples of embeddings.

Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium" (NeurIPS). Takes ``(reference: N×d, other: M×d)``, checked with
:func:`esq.two_samples`, and computes in float64; lower is closer.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from esq import MetricResult, WithOptions, check_number, two_samples

log = logging.getLogger("esq.metrics")

ROWS_PER_BLOCK = 4096  # rows centred at a time for a covariance: O(4096·d) extra memory, not O(N·d)
COLUMNS_PER_BLOCK = 512  # the covariance's tiles: smaller ones skip more of the product, run slower


def gaussian_statistics(features: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (divisor n − 1) of the rows of a matrix, as float64 tensors.

    The covariance is the product of the centred matrix with itself, accumulated over blocks of
    ``ROWS_PER_BLOCK`` rows, so it needs O(d²) memory beyond the input whatever the number of rows
    (and a read-only input, such as a memory-mapped cache file, is never handed to torch). Within
    a block, only the products of column blocks on and above the diagonal are computed: the
    others are their transposes (a quarter fewer operations at d = 2048).

    >>> mean, covariance = gaussian_statistics(np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]]))
    >>> mean.tolist(), covariance.tolist()
    ([2.0, 4.0], [[4.0, 7.0], [7.0, 13.0]])
    """
    features = np.asarray(features, dtype=np.float64)
    rows, dimension = features.shape
    mean = features.mean(axis=0)
    columns = [slice(start, start + COLUMNS_PER_BLOCK) for start in range(0, dimension, COLUMNS_PER_BLOCK)]
    scatter = torch.zeros(dimension, dimension, dtype=torch.float64)
    for start in range(0, rows, ROWS_PER_BLOCK):
        centred = torch.from_numpy(features[start : start + ROWS_PER_BLOCK] - mean)
        for index, left in enumerate(columns):
            for right in columns[index:]:
                scatter[left, right].addmm_(centred[:, left].T, centred[:, right])
    for index, left in enumerate(columns):
        for right in columns[index + 1 :]:
            scatter[right, left] = scatter[left, right].T
    return torch.from_numpy(mean), scatter / (rows - 1)


def _singular(eigenvalues: torch.Tensor) -> bool:
    """Smallest eigenvalue at most d·ε_float64 times the largest (``matrix_rank``'s tolerance)."""
    return bool(eigenvalues[0] <= len(eigenvalues) * torch.finfo(torch.float64).eps * eigenvalues[-1])


def _root_trace(eigenvalues_a: torch.Tensor, rotated_b: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of √Λa (VaᵀΣbVa) √Λa, which are those of √Σa Σb √Σa; negatives clipped to 0."""
    root = eigenvalues_a.clamp(min=0.0).sqrt()
    return torch.linalg.eigvalsh(root[:, None] * rotated_b * root[None, :]).clamp(min=0.0)


def frechet_distance(mean_a: Any, covariance_a: Any, mean_b: Any, covariance_b: Any, eps: float = 1e-6) -> MetricResult:
    """Fréchet distance between N(mean_a, covariance_a) and N(mean_b, covariance_b), in float64.

    ‖μa − μb‖² + tr(Σa) + tr(Σb) − 2 tr((√Σa Σb √Σa)^½). With Σa = Va Λa Vaᵀ (``eigh``),
    √Σa Σb √Σa = Va (√Λa VaᵀΣbVa √Λa) Vaᵀ, so the trace of its square root is the sum of the
    square roots of the eigenvalues (``eigvalsh``) of the symmetric middle factor. Rounding can
    leave eigenvalues of these positive semi-definite matrices slightly negative: they are clipped
    to 0. ``eps`` is added to both diagonals when either covariance is numerically singular (its
    smallest eigenvalue at most d·ε_float64 times its largest, the rank tolerance of
    ``numpy.linalg.matrix_rank``); ``details["eps_applied"]`` says whether it was.

    >>> round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2)).value, 12)
    4.0
    """
    mean_a, mean_b, covariance_a, covariance_b = (
        torch.as_tensor(array, dtype=torch.float64) for array in (mean_a, mean_b, covariance_a, covariance_b)
    )
    dimension = mean_a.shape[0]
    eigenvalues_a, eigenvectors_a = torch.linalg.eigh(covariance_a)
    rotated_b = eigenvectors_a.T @ covariance_b @ eigenvectors_a
    rotated_b = (rotated_b + rotated_b.T) / 2
    roots = _root_trace(eigenvalues_a, rotated_b)
    # cond(Σb) ≤ cond(√Λa·VaᵀΣbVa·√Λa)·cond(Σa): when that bound is within the tolerance, Σb is
    # certainly not singular and its own eigenvalues (one more O(d³) solve) are not needed
    bound = (roots[0] / roots[-1]) * (eigenvalues_a[0] / eigenvalues_a[-1]) if roots[-1] > 0 else 0.0
    certain = eigenvalues_a[0] > 0 and bound > dimension * torch.finfo(torch.float64).eps
    singular = _singular(eigenvalues_a) or (not certain and _singular(torch.linalg.eigvalsh(covariance_b)))
    eps_applied = singular and eps > 0
    if eps_applied:
        # Σa + εI has Σa's eigenvectors, and Vaᵀ(Σb + εI)Va = VaᵀΣbVa + εI
        identity = torch.eye(dimension, dtype=torch.float64)
        roots = _root_trace(eigenvalues_a + eps, rotated_b + eps * identity)
    difference = mean_a - mean_b
    offset = dimension * eps if eps_applied else 0.0
    trace_term = float(covariance_a.trace()) + float(covariance_b.trace()) + 2 * offset - 2 * float(roots.sqrt().sum())
    return _distance(float(difference @ difference), trace_term, bool(eps_applied))


def _distance(mean_term: float, trace_term: float, eps_applied: bool) -> MetricResult:
    # the distance is ≥ 0; a negative sum is rounding (identical or nearly identical inputs)
    value = max(mean_term + trace_term, 0.0)
    return MetricResult(value, {"mean_term": mean_term, "trace_term": trace_term, "eps_applied": eps_applied})


def frechet_distance_in_span(reference: np.ndarray, other: np.ndarray, eps: float = 1e-6) -> MetricResult:
    """The Fréchet distance between the Gaussian fits of two samples with n + m ≤ d rows, computed
    in the span of their centred rows instead of in all d dimensions: the same value as
    :func:`frechet_distance` on their covariances (both singular there, so ``eps`` applies), in
    O(d·(n + m)²) instead of O(d³).

    With Q (d × k, k = n + m) an orthonormal basis holding every centred row, Σa = Q Sa Qᵀ and
    Σb = Q Sb Qᵀ where Sa, Sb are the k × k covariances of the rows' coordinates in Q. Σa + εI
    and Σb + εI act on span(Q) as Sa + εI and Sb + εI, and on its orthogonal complement (d − k
    dimensions) as εI each, where the square root of their product is εI. So
    tr((√Σa' Σb' √Σa')^½) = tr((√Sa' Sb' √Sa')^½) + (d − k)·ε, and tr(Σa') = tr(Sa) + d·ε.
    Without ``eps`` the trace is exact: the nuclear norm of Xa Xbᵀ / √((n − 1)(m − 1)) for the
    centred rows Xa, Xb (the eigenvalues of √Σa Σb √Σa are the squared singular values of that
    matrix), so no square root of a rounding error near zero enters the sum.
    """
    rows_a, rows_b = torch.tensor(reference), torch.tensor(other)  # copies: inputs may be read-only
    mean_a, mean_b = rows_a.mean(dim=0), rows_b.mean(dim=0)
    centred_a, centred_b = rows_a - mean_a, rows_b - mean_b
    dimension = reference.shape[1]
    difference = mean_a - mean_b
    traces = float((centred_a**2).sum()) / (len(reference) - 1) + float((centred_b**2).sum()) / (len(other) - 1)
    if eps == 0:
        # the singular values of Xa Xbᵀ / √((n − 1)(m − 1)) are the square roots sought
        cross = torch.linalg.svdvals(centred_a @ centred_b.T).sum() / math.sqrt((len(reference) - 1) * (len(other) - 1))
        return _distance(float(difference @ difference), traces - 2 * float(cross), False)
    basis, _ = torch.linalg.qr(torch.cat([centred_a, centred_b]).T)
    coordinates_a, coordinates_b = centred_a @ basis, centred_b @ basis
    covariance_a = coordinates_a.T @ coordinates_a / (len(reference) - 1)
    covariance_b = coordinates_b.T @ coordinates_b / (len(other) - 1)
    span = basis.shape[1]
    eigenvalues_a, eigenvectors_a = torch.linalg.eigh(covariance_a + eps * torch.eye(span, dtype=torch.float64))
    rotated_b = eigenvectors_a.T @ (covariance_b + eps * torch.eye(span, dtype=torch.float64)) @ eigenvectors_a
    roots = _root_trace(eigenvalues_a, (rotated_b + rotated_b.T) / 2)
    root_trace = float(roots.sqrt().sum()) + (dimension - span) * eps
    return _distance(float(difference @ difference), traces + 2 * dimension * eps - 2 * root_trace, True)


class FID(WithOptions):
    """Fréchet inception distance (Heusel et al. 2017) between Gaussian fits of two samples.

    FID = ‖μr − μo‖² + tr(Σr) + tr(Σo) − 2 tr((√Σr Σo √Σr)^½), with μ the means and Σ the
    unbiased covariances (divisor n − 1, as pytorch-fid and torchmetrics). The matrix square roots
    come from symmetric eigendecompositions in float64 (see :func:`frechet_distance`), not from
    ``scipy.linalg.sqrtm``; the covariances from a centred matrix product over blocks of rows.
    ``details`` holds ``mean_term`` (‖μr − μo‖²), ``trace_term`` (the rest) and ``eps_applied``.

    ``eps`` (default 1e-6, the offset pytorch-fid falls back to) is added to the diagonals of both
    covariances when either is numerically singular: fewer samples than dimensions, constant or
    linearly dependent features. The eigen route gives a finite value without it; ``eps=0`` turns
    it off.

    Fewer samples than dimensions (n ≤ d) is not refused: the covariance then has rank at most
    n − 1 < d, so it is singular and FID is strongly biased (it depends on n) and unstable. The
    value is computed (with ``eps``), ``details["warning"]`` says so and what to do (more samples
    than dimensions, several times d if possible, or reduce the dimension first, e.g. with PCA),
    and the same line is logged as a warning on the ``esq.metrics`` logger.

    >>> import numpy as np
    >>> reference = np.random.default_rng(0).normal(size=(500, 4))
    >>> result = FID()(reference, reference + 1.0)
    >>> round(result.value, 9), round(result.details["mean_term"], 9)
    (4.0, 4.0)
    """

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = check_number("fid", "eps", eps, minimum=0)

    def __call__(self, reference: Any, other: Any) -> MetricResult:
        reference, other = two_samples(reference, other)
        dimension = reference.shape[1]
        if len(reference) + len(other) <= dimension:
            result = frechet_distance_in_span(reference, other, eps=self.eps)
        else:
            result = frechet_distance(*gaussian_statistics(reference), *gaussian_statistics(other), eps=self.eps)
        few = [(name, len(x)) for name, x in (("reference", reference), ("other", other)) if len(x) <= dimension]
        if not few:
            return result
        name, rows = min(few, key=lambda item: item[1])
        warning = (
            f"fid: `{name}` has {rows} samples for {dimension} dimensions, so its covariance has rank at most "
            f"{rows - 1} < {dimension}: it is singular and FID is biased and unstable at this size"
            f"{f' (added eps={self.eps:g} to the diagonals)' if result.details['eps_applied'] else ''}; "
            f"use more samples than dimensions (several times {dimension} if possible) "
            f"or reduce the dimension first, e.g. PCA to fewer than {rows} components"
        )
        log.warning(warning)
        return MetricResult(result.value, {**result.details, "warning": warning})
