"""RSA: representational similarity analysis, the Spearman correlation of two RDMs.

Kriegeskorte et al. 2008, "Representational similarity analysis – connecting the branches of
systems neuroscience" (Front. Syst. Neurosci.). Takes ``(x: N×d1, y: N×d2)``, row i of both the
same sample; higher is more similar, 1 for identical inputs.
"""

from __future__ import annotations

import numpy as np

from esq import DataError
from esq_metrics.spearman import SpearmanOfPairs


def centred_unit_rows(metric: str, name: str, features: np.ndarray) -> np.ndarray:
    """Each row minus its mean, divided by its L2 norm: dot products are Pearson correlations."""
    centred = features - features.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    constant = np.flatnonzero(norms == 0)
    if len(constant):
        raise DataError(
            f"{metric}: row {constant[0]} of `{name}` is constant, so its Pearson correlation with other rows "
            "is undefined; drop constant rows or add features that vary"
        )
    centred /= norms[:, None]
    return centred


class RSA(SpearmanOfPairs):
    """Representational similarity analysis (Kriegeskorte et al. 2008) of x against y.

    Each input's representational dissimilarity matrix is RDMᵢⱼ = 1 − r(rowᵢ, rowⱼ), r the
    Pearson correlation of two samples across features (rows centred and L2-normalised, then
    1 − dot products over blocks of rows); the value is the Spearman correlation of the two
    RDMs' upper triangles, with average ranks for ties. Identical rows have dissimilarity exactly
    0. Invariant to a positive affine change of each row. A constant row has no correlation and
    is refused, naming its index. Memory and sampling (``max_pairs``, ``seed``,
    ``memory_budget_mib``, ``details``) as :class:`esq_metrics.geometry.Geometry`.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> RSA()(x, 2.0 * x - 5.0).value
    1.0
    """

    name = "rsa"
    kind = "dissimilarity"
    undefined = "dissimilarity"

    def _prepare(self, name: str, features: np.ndarray) -> np.ndarray:
        return centred_unit_rows(self.name, name, features)
