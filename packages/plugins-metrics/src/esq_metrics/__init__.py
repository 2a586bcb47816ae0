"""esq-metrics: similarity metrics between paired features (``cka``, ``pwcca``, ``geometry``, ``rsa``,
``relational``, ``jaccard_knn``), distribution metrics (``fid``, ``kid``, ``cmmd``,
``gmm_mahalanobis``, ``gmm_nll``, ``kde_nll``, ``topological_geometry_score``) and graded image
degradations for esq; one metric per module, named after it.

Each metric's plain function (``esq_metrics.fid(reference, other)`` returns a float) is made here
from the plugin's table of metrics (:mod:`esq_metrics.plugin`), the one list of them. The metric
classes (``esq_metrics.FID``) and their modules load on first use, so importing the plugin
(``esq list``) imports neither torch nor scikit-learn.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

from esq_metrics.plugin import DISTRIBUTION_METRICS, SIMILARITY_METRICS

_EXAMPLES = {
    # similarity: higher is better, a noisy copy is closer than unrelated features
    "similarity": """
    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> x = generator.normal(size=(200, 8))
    >>> {name}(x, x + 0.1 * generator.normal(size=x.shape)) > {name}(x, generator.normal(size=x.shape))
    True
    """,
    # distribution: lower is better, a second draw of the reference's law is closer than a shifted ring
    "distribution": """
    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> reference, close = generator.normal(size=(300, 2)), generator.normal(size=(300, 2))
    >>> angles = generator.uniform(0, 2 * np.pi, size=300)
    >>> far = np.stack([np.cos(angles), np.sin(angles)], axis=1) + 2.0
    >>> {name}(reference, close) < {name}(reference, far)
    True
    """,
}


def _component(target: str) -> type:
    module, name = target.split(":")
    return getattr(importlib.import_module(f"esq_metrics.{module}"), name)


def _plain_function(name: str, target: str, summary: str, kind: str) -> Callable[..., float]:
    """``name(a, b, **options)``: ``Component(**options)(a, b).value`` for the table's ``target``."""
    if kind == "similarity":

        def function(x: Any, y: Any, **options: Any) -> float:
            return _component(target)(**options)(x, y).value

        arguments = "x, y"
    else:

        def function(reference: Any, other: Any, **options: Any) -> float:
            return _component(target)(**options)(reference, other).value

        arguments = "reference, other"
    module, component = target.split(":")
    function.__name__ = function.__qualname__ = name
    function.__doc__ = (
        f"{summary}: ``{name}({arguments}, **options)`` returns the float.\n\n"
        f"    The plain-function form of :class:`esq_metrics.{module}.{component}`, "
        f"``{component}(**options)({arguments}).value``;\n    its docstring gives the options and the details.\n"
        + _EXAMPLES[kind].format(name=name)
    )
    return function


_TABLE = [(entry, "similarity") for entry in SIMILARITY_METRICS] + [
    (entry, "distribution") for entry in DISTRIBUTION_METRICS
]
globals().update({name: _plain_function(name, target, summary, kind) for (name, target, summary, _), kind in _TABLE})
_COMPONENTS = {entry[1].split(":")[1]: entry[1] for entry, _ in _TABLE}

__all__ = sorted(entry[0] for entry, _ in _TABLE)


class _Package(types.ModuleType):
    """Keeps ``esq_metrics.cka`` the plain function once the module ``esq_metrics.cka`` is imported.

    Importing a submodule sets it as an attribute of its package, which would replace the function
    of the same name; the modules stay reachable as ``from esq_metrics.cka import CKA`` and through
    ``importlib.import_module("esq_metrics.cka")``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in __all__:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _COMPONENTS:
        return _component(_COMPONENTS[name])
    raise AttributeError(f"module 'esq_metrics' has no attribute {name!r}")
