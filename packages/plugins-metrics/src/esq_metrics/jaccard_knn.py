"""Jaccard k-NN: the overlap of each sample's k-nearest-neighbour sets, cosine, in x and in y.

Takes ``(x: N×d1, y: N×d2)``, row i of both the same sample; higher is more similar, 1 for
identical inputs. Neighbours are ordered by similarity, then by smaller index, exactly (no tie
is left to a partition's arbitrary order); copies of a row tie exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from esq import ConfigError, MetricResult, TopKIndex, WithOptions, check_int, check_number
from esq_metrics.pairwise import contiguous_pairs, identical_rows, unit_rows


def nearest_neighbours(metric: str, name: str, features: np.ndarray, k: int, memory_budget_mib: float) -> np.ndarray:
    """N×k: each row's k most cosine-similar other rows, by similarity then smaller index.

    The search is esq's exact top-k engine (:func:`esq.exact_top_k`) over the L2-normalised
    rows, in float64: a float32 screen with a proven error bound, float64 rescoring of the rows
    it cannot rule out, ties by smaller index. Each distinct row asks once for its k + 1 best
    rows (itself possibly among them); copies of a row are equal keys, so they tie exactly, and
    each original row drops itself from its row's list, or else the last entry.
    """
    unit = unit_rows(metric, name, features)
    labels = identical_rows(unit)
    first = np.unique(labels, return_index=True)[1]
    index = TopKIndex(unit, precision="float64", owner=metric)
    _, best = index.search(unit[first], k + 1, memory_budget_mib=memory_budget_mib)
    lists = best.numpy()[labels]
    own = lists == np.arange(len(features))[:, None]
    dropped = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(lists, dtype=bool)
    keep[np.arange(len(lists)), dropped] = False
    return lists[keep].reshape(len(features), k)


class JaccardKNN(WithOptions):
    """Mean Jaccard index of the k-nearest-neighbour sets of each sample in x and in y.

    For sample i, A and B are its k nearest other samples (itself excluded) by cosine similarity
    in x and in y; the value is the mean over i of |A ∩ B| / |A ∪ B|. Ties in similarity go to the
    smaller index, so the sets are deterministic; similarities are float64 inner products of
    L2-normalised rows (esq's exact top-k engine, blocked within ``memory_budget_mib``), and
    copies of a row tie exactly. An
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
