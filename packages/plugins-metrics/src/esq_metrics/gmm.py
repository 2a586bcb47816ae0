"""GMM scores: the mean Mahalanobis distance to the closest component, and the mean negative
log-likelihood, of a sample under a Gaussian mixture fitted on the reference.

The mixture is scikit-learn's ``GaussianMixture`` (EM; Dempster, Laird & Rubin 1977, "Maximum
Likelihood from Incomplete Data via the EM Algorithm", JRSS B). Takes ``(reference: N×d, other:
M×d)``, checked with :func:`esq.two_samples`, fits on ``reference`` in float64 and scores
``other``; lower is closer.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from esq import DataError, MetricResult, WithOptions, check_choice, check_int, check_number, two_samples
from esq_metrics.fingerprint import fingerprint

log = logging.getLogger("esq.metrics")

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class FittedMixture(WithOptions):
    """Options, validation and the fit shared by the two GMM metrics.

    The mixture fitted on the last reference is kept (keyed by the reference's shape and a hash of
    its bytes), so scoring several ``other`` samples against one reference, as a degradation sweep
    does, fits it once.
    """

    name = ""

    def __init__(
        self,
        n_components: int = 5,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        seed: int = 0,
    ) -> None:
        self.n_components = check_int(self.name, "n_components", n_components, minimum=1)
        self.covariance_type = check_choice(self.name, "covariance_type", covariance_type, COVARIANCE_TYPES)
        self.reg_covar = check_number(self.name, "reg_covar", reg_covar, minimum=0)
        self.max_iter = check_int(self.name, "max_iter", max_iter, minimum=1)
        self.seed = check_int(self.name, "seed", seed, minimum=0)
        self._fitted: tuple[tuple, GaussianMixture] | None = None

    def fit(self, reference: np.ndarray) -> GaussianMixture:
        """The mixture fitted on ``reference`` (a checked float64 matrix), reused when unchanged."""
        if self.n_components > len(reference):
            raise DataError(
                f"{self.name}: n_components={self.n_components} needs at least {self.n_components} reference "
                f"rows, got {len(reference)}; lower n_components or give more reference samples"
            )
        key = fingerprint(reference)
        if self._fitted is not None and self._fitted[0] == key:
            return self._fitted[1]
        mixture = GaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            random_state=self.seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported below and in details
            mixture.fit(reference)
        if not mixture.converged_:
            log.warning(
                "%s: the Gaussian mixture did not converge in max_iter=%d EM iterations; "
                "raise max_iter, or reg_covar, or lower n_components",
                self.name,
                self.max_iter,
            )
        self._fitted = (key, mixture)
        return mixture

    def _details(self, mixture: GaussianMixture) -> dict[str, Any]:
        return {"converged": bool(mixture.converged_), "n_iter": int(mixture.n_iter_)}


def squared_mahalanobis(mixture: GaussianMixture, points: np.ndarray) -> np.ndarray:
    """(M, K) squared Mahalanobis distances of each point to each component of a fitted mixture.

    (x − μₖ)ᵀ Σₖ⁻¹ (x − μₖ) = ‖(x − μₖ)ᵀ Uₖ‖² with Uₖ = ``precisions_cholesky_`` (Σₖ⁻¹ = Uₖ Uₖᵀ),
    whose shape depends on ``covariance_type``: full (K, d, d), tied (d, d) shared by all
    components, diag (K, d) and spherical (K,), the last two scaling each coordinate.
    """
    factors = mixture.precisions_cholesky_
    distances = np.empty((len(points), len(mixture.means_)))
    for component, mean in enumerate(mixture.means_):
        centred = points - mean
        if mixture.covariance_type == "full":
            whitened = centred @ factors[component]
        elif mixture.covariance_type == "tied":
            whitened = centred @ factors
        else:  # diag: one factor per coordinate; spherical: one for all coordinates
            whitened = centred * factors[component]
        distances[:, component] = np.einsum("ij,ij->i", whitened, whitened)
    return distances


class GMMMahalanobis(FittedMixture):
    """Mean Mahalanobis distance of ``other`` to the closest component of a GMM fitted on ``reference``.

    A scikit-learn ``GaussianMixture`` (``n_components`` components, ``covariance_type`` full,
    tied, diag or spherical, ``reg_covar`` added to the covariances' diagonals, ``seed`` as
    ``random_state``) is fitted on ``reference``; the value is

        (1/M) Σᵢ minₖ √((oᵢ − μₖ)ᵀ Σₖ⁻¹ (oᵢ − μₖ)),

    the closest component being the closest in Mahalanobis distance (not the most probable one,
    which also weighs the component's size and weight). ``details`` holds ``converged`` and
    ``n_iter`` of the EM fit.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> reference = generator.normal(size=(500, 2))
    >>> metric = GMMMahalanobis(n_components=1)
    >>> round(metric(reference, reference + 3.0).value, 1) > round(metric(reference, reference).value, 1)
    True
    """

    name = "gmm_mahalanobis"

    def __call__(self, reference: Any, other: Any) -> MetricResult:
        reference, other = two_samples(reference, other)
        mixture = self.fit(reference)
        closest = squared_mahalanobis(mixture, other).min(axis=1)
        return MetricResult(float(np.sqrt(closest).mean()), self._details(mixture))


class GMMNLL(FittedMixture):
    """Mean negative log-likelihood of ``other`` under a GMM fitted on ``reference``.

    The mixture is fitted as for :class:`GMMMahalanobis`; the value is
    −(1/M) Σᵢ log Σₖ πₖ N(oᵢ; μₖ, Σₖ) (scikit-learn's ``-score_samples(other).mean()``), in nats. A
    density, not a probability: it can be negative, and it grows with d, so compare values at one
    dimension only. ``details`` holds ``converged`` and ``n_iter`` of the EM fit.

    >>> import numpy as np
    >>> reference = np.random.default_rng(0).normal(size=(500, 2))
    >>> metric = GMMNLL(n_components=2, covariance_type="diag")
    >>> metric(reference, reference + 3.0).value > metric(reference, reference).value
    True
    """

    name = "gmm_nll"

    def __call__(self, reference: Any, other: Any) -> MetricResult:
        reference, other = two_samples(reference, other)
        mixture = self.fit(reference)
        return MetricResult(float(-mixture.score_samples(other).mean()), self._details(mixture))
