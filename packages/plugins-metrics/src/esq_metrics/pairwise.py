"""Pairwise quantities between rows, in blocks: squared distances tile by tile, every pair i < j
block by block, exact detection of identical rows, and L2-normalised rows.

No N×N matrix is ever held: a block has at most about ``memory_budget_mib`` MiB of temporaries
(:func:`rows_per_block`), computed in float64. Ties are between computed float64 values, so they
are exact where the arithmetic is (integer-valued or binary-fraction features give exact squared
distances); a decimal grid such as ``np.round(x, 1)`` is not representable, and two
mathematically equal distances may then differ in the last bit. Identical rows are detected
exactly (:func:`identical_rows`): their distance is exactly 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from esq import DataError, paired_features

BLOCK_TEMPORARIES = 4  # float64 arrays the size of one block alive at once (product, mask, pairs…)


def rows_per_block(memory_budget_mib: float, columns: int) -> int:
    """Rows of a block of ``columns`` float64 columns that keep its temporaries within the budget.

    >>> rows_per_block(1.0, 1024)
    32
    """
    return max(1, int(memory_budget_mib * 2**20) // (8 * BLOCK_TEMPORARIES * max(columns, 1)))


def contiguous_pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Paired features (at least 3 rows) as C-contiguous float64 matrices."""
    x, y = paired_features(x, y, min_rows=3)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def squared_distances(a: np.ndarray, b: np.ndarray, squared_a: np.ndarray, squared_b: np.ndarray) -> np.ndarray:
    """The tile ‖aᵢ − bⱼ‖² = ‖aᵢ‖² + ‖bⱼ‖² − 2aᵢ·bⱼ (``squared_*`` the rows' squared norms), clipped at 0.

    >>> squared_distances(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), np.array([0.0]), np.array([25.0]))
    array([[25.]])
    """
    block = a @ b.T
    block *= -2.0
    block += squared_a[:, None]
    block += squared_b[None, :]
    np.maximum(block, 0.0, out=block)  # a squared distance; rounding can leave it at -1e-16
    return block


def unit_rows(owner: str, name: str, features: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm; an all-zero row (no direction) is a ``DataError`` naming it."""
    norms = np.linalg.norm(features, axis=1)
    zero = np.flatnonzero(norms == 0)
    if len(zero):
        raise DataError(
            f"{owner}: row {zero[0]} of `{name}` is all zeros, so it has no direction and cannot be "
            "L2-normalised; drop all-zero embeddings"
        )
    return features / norms[:, None]


def identical_rows(features: np.ndarray) -> np.ndarray:
    """Labels of the rows: equal labels exactly where rows are equal, value by value.

    A wrapping integer hash of each row's bits groups candidates in O(N·d); only rows sharing a
    hash are compared in full. −0.0 and 0.0 count as equal.

    >>> labels = identical_rows(np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0], [-0.0, 1.0]]))
    >>> bool(labels[0] == labels[2]), bool(labels[1] == labels[3]), bool(labels[0] == labels[1])
    (True, True, False)
    """
    bits = (features + 0.0).view(np.uint64)
    multipliers = np.random.default_rng(0).integers(1, 2**63, size=features.shape[1], dtype=np.uint64) | np.uint64(1)
    hashes = (bits * multipliers).sum(axis=1, dtype=np.uint64)
    _, labels, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    shared = np.flatnonzero(counts[labels] > 1)
    if len(shared):
        _, exact = np.unique(features[shared] + 0.0, axis=0, return_inverse=True)
        labels[shared] = len(counts) + exact.ravel()
    _, labels = np.unique(labels, return_inverse=True)
    return labels.ravel()


def pair_blocks(features: np.ndarray, kind: str, rows_per_block: int) -> Iterator[torch.Tensor]:
    """The value of every pair i < j, as contiguous float64 tensors: for each block of rows s…e,
    the pairs within it (the upper triangle of its diagonal tile, flattened), then those with the
    rows after it (a rectangle). The order is the same for any two inputs with as many rows. Each
    tensor is overwritten by the next: copy what must be kept.

    ``kind`` "squared" gives squared Euclidean distances ‖xᵢ‖² + ‖xⱼ‖² − 2xᵢ·xⱼ (clipped at 0),
    "distance" their square roots, "dissimilarity" 1 − xᵢ·xⱼ for rows already centred and
    L2-normalised. Pairs of identical rows are exactly 0.

    >>> [block.tolist() for block in pair_blocks(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]), "distance", 2)]
    [[5.0], [[0.0], [5.0]]]
    """
    n = len(features)
    tensor = torch.from_numpy(features)
    norms = (tensor * tensor).sum(dim=1)
    labels = identical_rows(features)
    labels = torch.from_numpy(labels) if labels.max() < n - 1 else None  # None: no two rows alike
    buffer = torch.empty(min(rows_per_block, n) * max(n - rows_per_block, 1), dtype=torch.float64)
    for start in range(0, n - 1, rows_per_block):
        stop = min(start + rows_per_block, n)
        size = stop - start
        for columns in (slice(start, stop), slice(stop, n)):
            width = columns.stop - columns.start
            if width == 0 or (columns.start == start and size == 1):
                continue
            block = buffer[: size * width].view(size, width) if columns.start == stop else None
            if kind == "dissimilarity":
                block = torch.addmm(
                    torch.ones((), dtype=torch.float64), tensor[start:stop], tensor[columns].T, alpha=-1.0, out=block
                )
            else:
                block = torch.addmm(norms[None, columns], tensor[start:stop], tensor[columns].T, alpha=-2.0, out=block)
                block.add_(norms[start:stop, None]).clamp_(min=0.0)
                if kind == "distance":
                    block.sqrt_()
            if labels is not None:
                block[labels[start:stop, None] == labels[None, columns]] = 0.0
            if columns.start == start:
                yield block[torch.ones(size, size, dtype=torch.bool).triu_(1)]
            else:
                yield block


def pair_values(features: np.ndarray, kind: str, rows_per_block: int) -> np.ndarray:
    """All the values of :func:`pair_blocks` in one float64 vector of N(N − 1)/2."""
    n = len(features)
    values = np.empty(n * (n - 1) // 2)
    position = 0
    for block in pair_blocks(features, kind, rows_per_block):
        values[position : position + block.numel()] = block.reshape(-1).numpy()
        position += block.numel()
    return values
