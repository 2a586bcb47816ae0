"""KDE NLL: the mean negative log-likelihood of a sample under a Gaussian kernel density
estimate fitted on the reference.

Parzen 1962, "On Estimation of a Probability Density Function and Mode" (Ann. Math. Statist.),
as scikit-learn's ``KernelDensity`` computes it. Takes ``(reference: N×d, other: M×d)``, checked
with :func:`esq.two_samples`, in float64; lower is closer.
"""

from __future__ import annotations

from typing import Any

from sklearn.neighbors import KernelDensity

from esq import MetricResult, WithOptions, check_choice, check_number, two_samples

BANDWIDTH_RULES = ("scott", "silverman")


class KDENLL(WithOptions):
    """Mean negative log-likelihood of ``other`` under a Gaussian KDE fitted on ``reference``.

    scikit-learn's ``KernelDensity`` with a Gaussian kernel of bandwidth h:
    p(x) = (1/N) Σⱼ N(x; rⱼ, h²I), value = −(1/M) Σᵢ log p(oᵢ) in nats. ``bandwidth`` is a positive
    number or a rule as scikit-learn computes it: ``"scott"`` h = N^(−1/(d+4)), ``"silverman"``
    h = (N(d+2)/4)^(−1/(d+4)). Those rules assume unit-variance features (scikit-learn does not
    scale them by the data's spread, unlike ``scipy.stats.gaussian_kde``): standardise the features
    first, or give a number. ``details["bandwidth"]`` is the h used.

    >>> import numpy as np
    >>> reference = np.random.default_rng(0).normal(size=(500, 2))
    >>> metric = KDENLL(bandwidth="silverman")
    >>> metric(reference, reference + 3.0).value > metric(reference, reference).value
    True
    """

    def __init__(self, bandwidth: float | str = "scott") -> None:
        if isinstance(bandwidth, str):
            self.bandwidth: float | str = check_choice("kde_nll", "bandwidth", bandwidth, BANDWIDTH_RULES)
        else:
            self.bandwidth = check_number("kde_nll", "bandwidth", bandwidth, minimum=0, exclusive=("minimum",))

    def __call__(self, reference: Any, other: Any) -> MetricResult:
        reference, other = two_samples(reference, other)
        density = KernelDensity(kernel="gaussian", bandwidth=self.bandwidth).fit(reference)
        return MetricResult(float(-density.score_samples(other).mean()), {"bandwidth": float(density.bandwidth_)})
