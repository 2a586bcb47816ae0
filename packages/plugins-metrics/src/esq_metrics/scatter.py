"""Paired features read in blocks of rows: their float64 sufficient statistics (the scatter matrix
of the column-centred [X, Y]), what CKA's linear kernel and PWCCA compute from.

The rows are read in blocks of ``ROWS_PER_BLOCK``, each checked for NaN/Inf and converted to
float64 on its own, so a float32 input is never copied to float64 whole and memory stays
O((d1 + d2)²) whatever N.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from esq import DataError, as_matrix, paired_features

ROWS_PER_BLOCK = 8192  # rows converted to float64 at a time: O(8192·(d1 + d2)) extra memory, not O(N·d)


def paired_arrays(x: Any, y: Any, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as arrays of their own dtype (float32 stays float32), shapes checked.

    A shape that :func:`paired_features` would refuse is handed to it, so the error is the one
    every similarity metric raises; NaN and Inf are found block by block in :func:`paired_scatter`.
    """
    arrays = []
    for array in (x, y):
        if hasattr(array, "detach"):  # a torch tensor: float32 and float64 kept, other dtypes to float64
            tensor = array.detach().cpu()
            array = (
                tensor.numpy() if str(tensor.dtype) in ("torch.float32", "torch.float64") else tensor.double().numpy()
            )
        arrays.append(np.asarray(array))
    x, y = arrays
    well_formed = x.ndim == y.ndim == 2 and len(x) == len(y) >= min_rows and x.shape[1] >= 1 and y.shape[1] >= 1
    if not well_formed:
        return paired_features(x, y, min_rows)  # raises the DataError that says what is wrong
    return x, y


def row_blocks(rows: int) -> Iterator[slice]:
    """Slices of ``ROWS_PER_BLOCK`` rows covering ``rows``."""
    return (slice(start, start + ROWS_PER_BLOCK) for start in range(0, rows, ROWS_PER_BLOCK))


@dataclass(frozen=True)
class Scatter:
    """Sufficient statistics of paired features, all float64: ``scatter`` is ZᵀZ for the
    column-centred Z = [X − x̄, Y − ȳ]; a_i = ‖xᵢ − x̄‖², b_i = ‖yᵢ − ȳ‖² enter only as the sums
    Σ aᵢbᵢ, Σ aᵢ², Σ bᵢ² (what the debiased HSIC needs)."""

    rows: int
    mean_x: np.ndarray
    mean_y: np.ndarray
    scatter: np.ndarray
    constant_x: bool
    constant_y: bool
    row_norms_xy: float
    row_norms_xx: float
    row_norms_yy: float

    @property
    def split(self) -> int:
        return len(self.mean_x)

    @property
    def xx(self) -> np.ndarray:
        return self.scatter[: self.split, : self.split]

    @property
    def yy(self) -> np.ndarray:
        return self.scatter[self.split :, self.split :]

    @property
    def xy(self) -> np.ndarray:
        return self.scatter[: self.split, self.split :]


def paired_scatter(x: np.ndarray, y: np.ndarray) -> Scatter:
    """Two passes over blocks of rows: the means (and whether a side is constant), then the
    centred cross-products, so no cancellation between Σzzᵀ and N·z̄z̄ᵀ can occur."""
    rows, split = len(x), x.shape[1]
    statistics = []
    for name, array in (("x", x), ("y", y)):
        total = np.zeros(array.shape[1])
        low, high = np.full(array.shape[1], np.inf), np.full(array.shape[1], -np.inf)
        for block in row_blocks(rows):
            values = as_matrix(name, array[block], min_rows=1)  # float64, finite
            total += values.sum(axis=0)
            np.minimum(low, values.min(axis=0), out=low)
            np.maximum(high, values.max(axis=0), out=high)
        statistics.append((total / rows, bool(np.all(low == high))))
    (mean_x, constant_x), (mean_y, constant_y) = statistics
    scatter = np.zeros((split + y.shape[1], split + y.shape[1]))
    centred = np.empty((min(rows, ROWS_PER_BLOCK), len(scatter)))
    row_norms = np.zeros(3)
    for block in row_blocks(rows):
        size = len(x[block])
        np.subtract(x[block], mean_x, out=centred[:size, :split])
        np.subtract(y[block], mean_y, out=centred[:size, split:])
        values = centred[:size]
        scatter += values.T @ values
        a = np.einsum("ij,ij->i", values[:, :split], values[:, :split])
        b = np.einsum("ij,ij->i", values[:, split:], values[:, split:])
        row_norms += (a @ b, a @ a, b @ b)
    scatter = (scatter + scatter.T) / 2  # exactly symmetric, whatever the BLAS did
    return Scatter(rows, mean_x, mean_y, scatter, constant_x, constant_y, *map(float, row_norms))


def constant_error(metric: str, name: str, why: str) -> DataError:
    return DataError(
        f"{metric}: `{name}` is constant (every row the same), so it has no variance after centring and "
        f"{why}; check that the features are not all equal (e.g. a quantiser that collapsed to one code)"
    )
