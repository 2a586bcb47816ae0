"""The Spearman correlation of the values of the same pairs in x and in y: what geometry (pair
distances) and rsa (pair dissimilarities) share, with its bound on the pairs ranked at once.

Ranking needs every pair's value at once; beyond ``max_pairs`` pairs the statistic is computed
exactly on a seeded random subset of rows (see :class:`esq_metrics.geometry.Geometry`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from esq import DataError, MetricResult, WithOptions, check_int, check_number
from esq_metrics.pairwise import contiguous_pairs, pair_values, rows_per_block
from esq_metrics.ranks import doubled_average_ranks, rank_correlation

log = logging.getLogger("esq.metrics")


def sampled_rows(n: int, max_pairs: int, seed: int) -> np.ndarray | None:
    """``None`` when all pairs fit in ``max_pairs``, else the rows of a seeded random subset of
    the largest size m with m(m − 1)/2 ≤ ``max_pairs`` (ascending).

    >>> sampled_rows(10, 45, seed=0) is None, len(sampled_rows(10, 44, seed=0))
    (True, 9)
    """
    if n * (n - 1) // 2 <= max_pairs:
        return None
    size = max(3, int((1 + math.isqrt(1 + 8 * max_pairs)) // 2))
    while size * (size - 1) // 2 > max_pairs and size > 3:
        size -= 1
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


class SpearmanOfPairs(WithOptions):
    """Spearman correlation between the values of the same pairs computed from x and from y.

    A subclass names itself (``name``), the pair values (``kind``, one of :func:`pair_blocks`'s)
    and what they are in words (``undefined``), and may prepare the rows first (``_prepare``).
    """

    name = ""
    kind = ""
    undefined = ""

    def __init__(self, max_pairs: int = 50_000_000, seed: int = 0, memory_budget_mib: float = 512.0) -> None:
        self.max_pairs = check_int(self.name, "max_pairs", max_pairs, minimum=3)
        self.seed = check_int(self.name, "seed", seed, minimum=0)
        self._warned: set[int] = set()  # one warning per sample size, not one per bootstrap replicate
        self.memory_budget_mib = check_number(
            self.name, "memory_budget_mib", memory_budget_mib, minimum=0, exclusive=("minimum",)
        )

    def _prepare(self, name: str, features: np.ndarray) -> np.ndarray:
        return features

    def _ranks(self, name: str, features: np.ndarray) -> np.ndarray:
        prepared = self._prepare(name, features)
        holder = [pair_values(prepared, self.kind, rows_per_block(self.memory_budget_mib, len(prepared)))]
        del prepared
        if holder[0].min() == holder[0].max():
            raise DataError(
                f"{self.name}: every pairwise {self.undefined} in `{name}` is the same, so their rank "
                "correlation is undefined (zero variance); pass features whose rows differ"
            )
        return doubled_average_ranks(holder)

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = contiguous_pairs(x, y)
        rows = sampled_rows(len(x), self.max_pairs, self.seed)
        if rows is not None:
            if len(x) not in self._warned:
                self._warned.add(len(x))
                log.warning(
                    "%s: %d rows make %d pairs, more than max_pairs %d, so a seeded subset of %d rows is ranked; "
                    "set --set metric_options.%s.max_pairs=N to rank more (memory grows with N)",
                    self.name, len(x), len(x) * (len(x) - 1) // 2, self.max_pairs, len(rows), self.name,
                )  # fmt: skip
            x, y = x[rows], y[rows]
        ranks_x = self._ranks("x", x)
        ranks_y = self._ranks("y", y)
        value = rank_correlation(ranks_x, ranks_y)
        details = {"sampled": rows is not None, "pairs": len(ranks_x), "rows": len(x), "seed": self.seed}
        return MetricResult(value, details)
