"""Jaccard k-NN: the overlap of each sample's k-nearest-neighbour sets, cosine, in x and in y.

Takes ``(x: N×d1, y: N×d2)``, row i of both the same sample; higher is more similar, 1 for
identical inputs. Neighbours are ordered by similarity, then by smaller index, exactly (no tie
is left to a partition's arbitrary order); copies of a row tie exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from esq import ConfigError, MetricResult, WithOptions, check_int, check_number
from esq_metrics.pairwise import contiguous_pairs, identical_rows, rows_per_block, unit_rows

SCREEN_MARGIN = 8  # distinct rows screened in float32 beyond the k + 1 needed (see nearest_neighbours)


def top_by_score_then_index(scores: np.ndarray, indices: np.ndarray, count: int) -> np.ndarray:
    """For each row of ``scores`` (columns named by distinct ``indices``), the ``count`` column
    names with the highest scores, ties broken by smaller name, in that order.

    ``argpartition`` finds the threshold score; only rows where it is tied beyond the count are
    resolved again, by name. Exact: no tie is left to the partition's arbitrary order.

    >>> top_by_score_then_index(np.array([[0.5, 0.9, 0.5, 0.5]]), np.array([3, 0, 2, 1]), 3).tolist()
    [[0, 1, 2]]
    """
    chosen = np.argpartition(-scores, count - 1, axis=1)[:, :count]
    threshold = np.take_along_axis(scores, chosen, axis=1).min(axis=1, keepdims=True)
    tied = np.flatnonzero((scores >= threshold).sum(axis=1) > count)
    if len(tied):
        by_name = np.argsort(indices, kind="stable")
        sub = scores[tied][:, by_name]
        above = sub > threshold[tied]
        equal = sub == threshold[tied]
        needed = count - above.sum(axis=1, keepdims=True)
        keep = above | (equal & (np.cumsum(equal, axis=1) <= needed))
        chosen[tied] = by_name[np.nonzero(keep)[1].reshape(len(tied), count)]
    values = np.take_along_axis(scores, chosen, axis=1)
    names = indices[chosen]
    order = np.lexsort((names, -values), axis=1)
    return np.take_along_axis(names, order, axis=1)


def float32_product_error(columns: int) -> float:
    """A bound on |float32 product − float64 product| for two float64 rows of norm at most 1:
    rounding each to float32 (2u + u²), the float32 sum of ``columns`` products in any order
    (γ = n·u / (1 − n·u), Higham's bound), the float64 products' own error and subnormals; 1%
    more covers the second-order terms. u = 2⁻²⁴."""
    unit = 2.0**-24
    gamma = columns * unit / (1.0 - columns * unit)
    return 1.01 * (gamma + 2.0 * unit + unit * unit + 2.0 * columns * 2.0**-53) + columns * 2.0**-125


def _exact_top(
    tensor: torch.Tensor, rows: np.ndarray, column_rows: np.ndarray, column_names: np.ndarray, count: int, block: int
) -> np.ndarray:
    """The ``count`` best named columns of ``rows`` against every row of ``tensor``, in float64."""
    best = np.empty((len(rows), count), dtype=np.int64)
    for start in range(0, len(rows), block):
        chosen = torch.from_numpy(rows[start : start + block])
        similarities = (tensor[chosen] @ tensor.T).numpy()
        best[start : start + block] = top_by_score_then_index(similarities[:, column_rows], column_names, count)
    return best


def nearest_neighbours(metric: str, name: str, features: np.ndarray, k: int, memory_budget_mib: float) -> np.ndarray:
    """N×k: each row's k most cosine-similar other rows, by similarity then smaller index.

    Similarities are computed once per distinct (L2-normalised) row, so copies of a row tie
    exactly; each distinct row keeps its k + 1 best (itself possibly among them), and each original
    row drops itself from that list, or else the last entry.

    The float64 similarities of all pairs are not needed: a float32 product (2.5× faster) screens
    each row's ``k + 1 + SCREEN_MARGIN`` best distinct rows, which are then scored in float64. A
    row's result is certain when its (k + 1)-th best float64 score among them beats the best
    float32 score left out by more than :func:`float32_product_error` (which bounds how far the
    float64 score of a row left out can lie above its float32 score); the other rows are computed
    again against all rows in float64.
    """
    unit = unit_rows(metric, name, features)
    labels = identical_rows(unit)
    counts = np.bincount(labels)
    representatives = unit[np.unique(labels, return_index=True)[1]]
    # each distinct row's copies, smallest indices first, at most k + 1 of them: enough for a top k + 1
    grouped = np.argsort(labels, kind="stable")
    starts = np.cumsum(counts) - counts
    place = np.arange(len(grouped)) - starts[labels[grouped]]
    kept = place < k + 1
    column_names, column_rows = grouped[kept], labels[grouped[kept]]
    copies = np.full((len(representatives), min(k + 1, int(counts.max()))), -1, dtype=np.int64)
    copies[column_rows, place[kept]] = column_names
    tensor = torch.from_numpy(np.ascontiguousarray(representatives))
    exact_block = rows_per_block(memory_budget_mib, 2 * len(column_names))
    count = k + 1 + SCREEN_MARGIN
    if count >= len(representatives):
        best = _exact_top(tensor, np.arange(len(representatives)), column_rows, column_names, k + 1, exact_block)
    else:
        best = _screened_top(tensor, copies, count, k + 1, memory_budget_mib)
        redo = np.flatnonzero(best[:, 0] < 0)
        if len(redo):
            best[redo] = _exact_top(tensor, redo, column_rows, column_names, k + 1, exact_block)
    lists = best[labels]
    own = lists == np.arange(len(features))[:, None]
    dropped = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(lists, dtype=bool)
    keep[np.arange(len(lists)), dropped] = False
    return lists[keep].reshape(len(features), k)


def _screened_top(
    tensor: torch.Tensor, copies: np.ndarray, candidates: int, count: int, memory_budget_mib: float
) -> np.ndarray:
    """The ``count`` best named columns of each distinct row, or −1 in its first entry where the
    float32 screen of ``candidates`` distinct rows cannot certify them (see nearest_neighbours)."""
    rows = len(tensor)
    error = float32_product_error(tensor.shape[1])
    screen = tensor.float()
    names = torch.from_numpy(copies)
    best = np.full((rows, count), -1, dtype=np.int64)
    block = max(1, int(memory_budget_mib * 2**20) // (4 * 2 * rows))
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        coarse, chosen = torch.topk(screen[start:stop] @ screen.T, candidates, dim=1, sorted=False)
        left_out = coarse.min(dim=1).values.double()
        scores = torch.einsum("bd,bcd->bc", tensor[start:stop], tensor[chosen])
        named = names[chosen].reshape(stop - start, -1)
        scores = scores[:, :, None].expand(-1, -1, copies.shape[1]).reshape(stop - start, -1)
        scores = torch.where(named >= 0, scores, -math.inf).numpy()
        order = np.lexsort((named.numpy(), -scores), axis=1)[:, :count]
        threshold = np.take_along_axis(scores, order[:, -1:], axis=1)[:, 0]
        certain = threshold > left_out.numpy() + error
        best[start:stop][certain] = np.take_along_axis(named.numpy(), order, axis=1)[certain]
    return best


class JaccardKNN(WithOptions):
    """Mean Jaccard index of the k-nearest-neighbour sets of each sample in x and in y.

    For sample i, A and B are its k nearest other samples (itself excluded) by cosine similarity
    in x and in y; the value is the mean over i of |A ∩ B| / |A ∪ B|. Ties in similarity go to the
    smaller index, so the sets are deterministic; similarities are float64 products of
    L2-normalised rows over blocks of rows against all, and copies of a row tie exactly. An
    all-zero row (no direction) is refused. ``k`` must be less than N.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> JaccardKNN(k=5)(x, 4.0 * x).value
    1.0
    """

    name = "jaccard_knn"

    def __init__(self, k: int = 10, memory_budget_mib: float = 512.0) -> None:
        self.k = check_int(self.name, "k", k, minimum=1)
        self.memory_budget_mib = check_number(
            self.name, "memory_budget_mib", memory_budget_mib, minimum=0, exclusive=("minimum",)
        )

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = contiguous_pairs(x, y)
        if self.k >= len(x):
            raise ConfigError(
                f"jaccard_knn: k={self.k} needs more than {self.k} samples, got {len(x)}; lower k or pass more rows"
            )
        neighbours_x = nearest_neighbours(self.name, "x", x, self.k, self.memory_budget_mib)
        neighbours_y = nearest_neighbours(self.name, "y", y, self.k, self.memory_budget_mib)
        both = np.sort(np.concatenate([neighbours_x, neighbours_y], axis=1), axis=1)
        shared = (both[:, 1:] == both[:, :-1]).sum(axis=1)
        jaccard = shared / (2 * self.k - shared)
        return MetricResult(float(jaccard.mean()), {"k": self.k, "min": float(jaccard.min())})
