"""Mean cosine similarity between paired embeddings: mean_i <x_i, y_i> / (|x_i| |y_i|)."""

from __future__ import annotations

from typing import Any

import numpy as np

from esq import DataError, MetricResult, WithOptions, check_number, paired_features


class MeanCosine(WithOptions):
    """Mean (and minimum) cosine similarity of row i of ``x`` with row i of ``y``.

    >>> import numpy as np
    >>> MeanCosine()(np.eye(3), 2 * np.eye(3)).value
    1.0
    """

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = check_number("mean_cosine", "eps", eps, minimum=0, exclusive=("minimum",))

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = paired_features(x, y)
        if x.shape[1] != y.shape[1]:
            raise DataError(f"mean_cosine compares vectors of one dimension; got {x.shape[1]} and {y.shape[1]} columns")
        norms = np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), self.eps)
        cosines = (x * y).sum(axis=1) / norms
        return MetricResult(float(cosines.mean()), {"min": float(cosines.min())})


def mean_cosine(x: Any, y: Any) -> float:
    """The plain-function form: ``mean_cosine(x, y)`` returns the float."""
    return MeanCosine()(x, y).value
