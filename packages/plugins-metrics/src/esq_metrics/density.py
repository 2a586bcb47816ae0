"""Scores of a sample under a density fitted on the reference: GMM Mahalanobis, GMM NLL, KDE NLL.

Each metric takes ``(reference: N×d, other: M×d)``, checks both with
:func:`esq.validation.two_samples`, fits a scikit-learn density on ``reference`` in float64 and
scores ``other`` with it; lower is closer. The component returns ``MetricResult(value, details)``;
the plain function of the same name returns the float.
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity

from esq import ConfigError, DataError, MetricResult
from esq import two_samples

log = logging.getLogger("esq.metrics")

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
BANDWIDTH_RULES = ("scott", "silverman")


def _integer(metric: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{metric}: {name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _non_negative(metric: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{metric}: {name} must be a finite number of at least 0, got {value!r}")
    return float(value)


class _FittedMixture:
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
        self.n_components = _integer(self.name, "n_components", n_components, 1)
        if covariance_type not in COVARIANCE_TYPES:
            raise ConfigError(
                f"{self.name}: covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, got {covariance_type!r}"
            )
        self.covariance_type = covariance_type
        self.reg_covar = _non_negative(self.name, "reg_covar", reg_covar)
        self.max_iter = _integer(self.name, "max_iter", max_iter, 1)
        self.seed = _integer(self.name, "seed", seed, 0)
        self._fitted: tuple[tuple, GaussianMixture] | None = None

    @property
    def options(self) -> dict[str, Any]:
        return {
            "n_components": self.n_components,
            "covariance_type": self.covariance_type,
            "reg_covar": self.reg_covar,
            "max_iter": self.max_iter,
            "seed": self.seed,
        }

    def fit(self, reference: np.ndarray) -> GaussianMixture:
        """The mixture fitted on ``reference`` (a checked float64 matrix), reused when unchanged."""
        if self.n_components > len(reference):
            raise DataError(
                f"{self.name}: n_components={self.n_components} needs at least {self.n_components} reference "
                f"rows, got {len(reference)}; lower n_components or give more reference samples"
            )
        key = (reference.shape, hashlib.blake2b(np.ascontiguousarray(reference).data).hexdigest())
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


class GMMMahalanobis(_FittedMixture):
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


def gmm_mahalanobis(reference: Any, other: Any, **options: Any) -> float:
    """The plain-function form of :class:`GMMMahalanobis`: returns the float.

    >>> import numpy as np
    >>> reference = np.random.default_rng(0).normal(size=(500, 2))
    >>> round(gmm_mahalanobis(reference, np.zeros((2, 2)), n_components=1), 1)
    0.1
    """
    return GMMMahalanobis(**options)(reference, other).value


class GMMNLL(_FittedMixture):
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


def gmm_nll(reference: Any, other: Any, **options: Any) -> float:
    """The plain-function form of :class:`GMMNLL`: returns the float.

    >>> import numpy as np
    >>> reference = np.random.default_rng(0).normal(size=(2000, 1))
    >>> round(gmm_nll(reference, reference, n_components=1), 2)  # a standard normal: ½ log 2πe ≈ 1.42
    1.42
    """
    return GMMNLL(**options)(reference, other).value


class KDENLL:
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
            valid = bandwidth in BANDWIDTH_RULES
        else:
            valid = not isinstance(bandwidth, bool) and isinstance(bandwidth, int | float) and 0 < bandwidth < math.inf
        if not valid:
            raise ConfigError(
                f"kde_nll: bandwidth must be a positive number or one of {', '.join(BANDWIDTH_RULES)}, "
                f"got {bandwidth!r}"
            )
        self.bandwidth: float | str = bandwidth if isinstance(bandwidth, str) else float(bandwidth)

    @property
    def options(self) -> dict[str, Any]:
        return {"bandwidth": self.bandwidth}

    def __call__(self, reference: Any, other: Any) -> MetricResult:
        reference, other = two_samples(reference, other)
        density = KernelDensity(kernel="gaussian", bandwidth=self.bandwidth).fit(reference)
        return MetricResult(float(-density.score_samples(other).mean()), {"bandwidth": float(density.bandwidth_)})


def kde_nll(reference: Any, other: Any, **options: Any) -> float:
    """The plain-function form of :class:`KDENLL`: returns the float.

    >>> import numpy as np
    >>> reference = np.random.default_rng(0).normal(size=(500, 2))
    >>> kde_nll(reference, reference + 3.0, bandwidth=0.5) > kde_nll(reference, reference, bandwidth=0.5)
    True
    """
    return KDENLL(**options)(reference, other).value
