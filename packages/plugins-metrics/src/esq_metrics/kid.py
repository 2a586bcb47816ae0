"""KID: the kernel inception distance, an unbiased MMD² with a cubic polynomial kernel over
random subsets.

Bińkowski et al. 2018, "Demystifying MMD GANs" (ICLR). Takes ``(reference: N×d, other: M×d)``,
checked with :func:`esq.two_samples`, and computes in float64; lower is closer.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from esq import MetricResult, WithOptions, check_int, two_samples

log = logging.getLogger("esq.metrics")


def kid_subset_indices(
    n_reference: int, n_other: int, subsets: int, subset_size: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The rows KID uses: ``subsets`` pairs of index arrays, drawn without replacement.

    Depends only on its arguments, never on the data, so a degradation sweep that calls KID at
    every level with the same seed and sizes compares the same subsets. ``subset_size`` is capped
    at the smaller sample count.

    >>> [(a.tolist(), b.tolist()) for a, b in kid_subset_indices(3, 5, 1, 2, seed=0)]
    [([1, 2], [4, 1])]
    """
    size = min(subset_size, n_reference, n_other)
    generator = np.random.default_rng(seed)
    return [
        (generator.choice(n_reference, size, replace=False), generator.choice(n_other, size, replace=False))
        for _ in range(subsets)
    ]


def _cubic_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    kernel = a @ b.T
    kernel *= gamma
    kernel += 1.0
    cube = kernel * kernel
    cube *= kernel
    return cube


class KID(WithOptions):
    """Kernel inception distance (Bińkowski et al. 2018): unbiased MMD² over random subsets.

    Kernel k(x, y) = (γ xᵀy + 1)³ with γ = 1/d. For each of ``subsets`` subsets of m =
    min(``subset_size``, N, M) rows of each sample, drawn without replacement by
    :func:`kid_subset_indices` (seeded; the same draws for the same seed and sizes), the unbiased
    estimate

        MMD²ᵤ = Σ_{i≠j} k(rᵢ, rⱼ) / (m(m−1)) + Σ_{i≠j} k(oᵢ, oⱼ) / (m(m−1)) − 2 Σ_{i,j} k(rᵢ, oⱼ) / m²

    (the estimator of the authors' code, torch-fidelity and torchmetrics). The value is the mean over
    subsets; ``details["std"]`` is their standard deviation (ddof 0, as torchmetrics reports it),
    ``details["subset_size"]`` the m used. Unbiased, so it can be slightly negative.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> reference, other = generator.normal(size=(300, 4)), generator.normal(loc=1.0, size=(300, 4))
    >>> result = KID(subsets=10, subset_size=100)(reference, other)
    >>> round(result.value, 3), result.details["subset_size"]
    (9.161, 100)
    """

    def __init__(self, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> None:
        self.subsets = check_int("kid", "subsets", subsets, minimum=1)
        self.subset_size = check_int("kid", "subset_size", subset_size, minimum=2)
        self.seed = check_int("kid", "seed", seed, minimum=0)
        self._warned: set[int] = set()  # one warning per subset size, not one per degradation level

    def __call__(self, reference: Any, other: Any) -> MetricResult:
        reference, other = two_samples(reference, other)
        gamma = 1.0 / reference.shape[1]
        indices = kid_subset_indices(len(reference), len(other), self.subsets, self.subset_size, self.seed)
        size = len(indices[0][0])
        if size < self.subset_size and size not in self._warned:
            self._warned.add(size)
            log.warning(
                "kid: subset_size %d is more than the samples hold (N=%d, M=%d), so each of the %d subsets takes "
                "%d rows (clean-fid's rule; torchmetrics refuses): the subsets overlap and the std shrinks; "
                "set --set metric_options.kid.subset_size=%d or fewer to say so",
                self.subset_size, len(reference), len(other), self.subsets, size, size,
            )  # fmt: skip
        estimates = np.empty(self.subsets)
        for subset, (rows_reference, rows_other) in enumerate(indices):
            a, b = reference[rows_reference], other[rows_other]
            within_a, within_b = _cubic_kernel(a, a, gamma), _cubic_kernel(b, b, gamma)
            off_diagonal = within_a.sum() - np.trace(within_a) + within_b.sum() - np.trace(within_b)
            estimates[subset] = off_diagonal / (size * (size - 1)) - 2 * _cubic_kernel(a, b, gamma).mean()
        return MetricResult(
            float(estimates.mean()),
            {"std": float(estimates.std()), "subsets": self.subsets, "subset_size": size},
        )
