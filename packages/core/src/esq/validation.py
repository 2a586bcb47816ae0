"""Input checks shared by metrics: 2-D, finite, matching sizes, as float64 NumPy arrays.

>>> paired_features([[1.0, 2.0], [3.0, 4.0]], [[1.0], [2.0]])[1].shape
(2, 1)
>>> paired_features([1.0, 2.0], [[1.0], [2.0]])
Traceback (most recent call last):
...
esq.errors.DataError: argument `x` expected a 2-D array (samples × features), got shape (2,)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from esq.errors import DataError


def as_matrix(name: str, array: Any, min_rows: int = 2) -> np.ndarray:
    """``array`` as a finite float64 matrix with at least ``min_rows`` rows."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().double().numpy()
    matrix = np.asarray(array, dtype=np.float64)
    if matrix.ndim != 2:
        raise DataError(f"argument `{name}` expected a 2-D array (samples × features), got shape {matrix.shape}")
    if matrix.shape[0] < min_rows or matrix.shape[1] < 1:
        raise DataError(f"argument `{name}` needs at least {min_rows} rows and 1 column, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise DataError(f"argument `{name}` contains NaN or infinite values; remove or fix those rows")
    return matrix


def paired_features(x: Any, y: Any, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Similarity metrics' input: row i of ``x`` and of ``y`` describe the same sample."""
    x, y = as_matrix("x", x, min_rows), as_matrix("y", y, min_rows)
    if x.shape[0] != y.shape[0]:
        raise DataError(
            "arguments `x` and `y` must have the same number of rows (paired samples), "
            f"got {x.shape[0]} and {y.shape[0]}"
        )
    return x, y


def two_samples(reference: Any, other: Any, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Distribution metrics' input: two samples of vectors of one dimension."""
    reference, other = as_matrix("reference", reference, min_rows), as_matrix("other", other, min_rows)
    if reference.shape[1] != other.shape[1]:
        raise DataError(
            f"arguments `reference` and `other` must have the same number of columns, "
            f"got {reference.shape[1]} and {other.shape[1]}"
        )
    return reference, other
