"""esq-metrics: similarity metrics between paired features (``cka``, ``pwcca``, ``geometry``, ``rsa``,
``relational``, ``jaccard_knn``), distribution
metrics (``fid``, ``kid``, ``cmmd``, ``gmm_mahalanobis``, ``gmm_nll``, ``kde_nll``) and graded
image degradations for esq.

The plain functions (``esq_metrics.fid(reference, other)`` returns a float) load on first use,
so importing the plugin (``esq list``) imports neither torch nor scikit-learn.
"""

import importlib
from typing import Any

_FUNCTIONS = {
    "cka": "similarity_feature",
    "pwcca": "similarity_feature",
    "geometry": "similarity_pairwise",
    "rsa": "similarity_pairwise",
    "relational": "similarity_pairwise",
    "jaccard_knn": "similarity_pairwise",
    "fid": "distribution",
    "kid": "distribution",
    "cmmd": "distribution",
    "gmm_mahalanobis": "density",
    "gmm_nll": "density",
    "kde_nll": "density",
    "topological_geometry_score": "topological",
}
__all__ = sorted(_FUNCTIONS)


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f"esq_metrics.{_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module 'esq_metrics' has no attribute {name!r}")
