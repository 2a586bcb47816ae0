"""Relational: the distance relation of relational knowledge distillation (RKD), the Pearson
correlation of mean-normalised pair distances.

Park et al. 2019, "Relational Knowledge Distillation" (CVPR). Takes ``(x: N×d1, y: N×d2)``, row
i of both the same sample; higher is more similar, 1 for identical inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from esq import DataError, MetricResult, WithOptions, check_number
from esq_metrics.pairwise import contiguous_pairs, pair_blocks, rows_per_block


class Relational(WithOptions):
    """RKD distance relation (Park et al. 2019): Pearson correlation of normalised pair distances.

    ψ(i, j) = ‖xᵢ − xⱼ‖ / μ, μ the mean distance over the pairs i ≠ j, for x and for y; the
    value is the Pearson correlation of ψₓ and ψᵧ over the pairs i < j (the normalisation does
    not change it). ``details["huber"]`` is RKD's distance loss between the two normalised
    distance sets: the mean over pairs i < j of the Huber (smooth L1, δ = 1) function
    h(e) = e²/2 if |e| < 1 else |e| − 1/2 of ψₓ − ψᵧ. (The authors' code averages over the
    whole N×N matrix, diagonal zeros included, which is (N − 1)/N times this.)

    Exact, in float64, with no pair stored: a first pass over blocks of rows sums the distances
    (the means), a second sums the centred products, squares and Huber terms. Both passes compute
    every distance, so this costs twice the N²·d/2 multiply-adds of one pass.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> result = Relational()(x, 2.0 * x)
    >>> round(result.value, 12), round(result.details["huber"], 12)
    (1.0, 0.0)
    """

    name = "relational"

    def __init__(self, memory_budget_mib: float = 512.0) -> None:
        self.memory_budget_mib = check_number(
            self.name, "memory_budget_mib", memory_budget_mib, minimum=0, exclusive=("minimum",)
        )

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = contiguous_pairs(x, y)
        n = len(x)
        pairs = n * (n - 1) // 2
        block_rows = rows_per_block(self.memory_budget_mib, 2 * n)
        # Σ over pairs of a, b, a², b², a·b for the distances a, b shifted by their first block's mean
        sums, shift, lowest, highest = np.zeros(5), None, np.full(2, np.inf), np.full(2, -np.inf)
        for block_x, block_y in self._distances(x, y, block_rows):
            for side, block in enumerate((block_x, block_y)):
                low, high = torch.aminmax(block)
                lowest[side], highest[side] = min(lowest[side], float(low)), max(highest[side], float(high))
            if shift is None:
                shift = (float(block_x.mean()), float(block_y.mean()))
            block_x.sub_(shift[0])
            block_y.sub_(shift[1])
            sums += (
                float(block_x.sum()),
                float(block_y.sum()),
                float(torch.dot(block_x, block_x)),
                float(torch.dot(block_y, block_y)),
                float(torch.dot(block_x, block_y)),
            )
        for side, name in enumerate("xy"):
            if lowest[side] == highest[side]:
                raise DataError(
                    f"relational: every pairwise distance in `{name}` is the same ({lowest[side]:g}), so they "
                    "cannot be normalised by their mean (all 0) or correlated (zero variance); "
                    "pass features whose rows and distances differ"
                )
        sum_x, sum_y, squares_x, squares_y, products = sums
        covariance = products - sum_x * sum_y / pairs
        variances = (squares_x - sum_x * sum_x / pairs) * (squares_y - sum_y * sum_y / pairs)
        value = float(np.clip(covariance / math.sqrt(variances), -1.0, 1.0))
        mean_x, mean_y = shift[0] + sum_x / pairs, shift[1] + sum_y / pairs
        huber = 0.0
        for block_x, block_y in self._distances(x, y, block_rows):
            error = block_x.div_(mean_x).sub_(block_y.div_(mean_y)).abs_()
            inside = torch.clamp(error, max=1.0, out=block_y)  # h(e) = min(e, 1)²/2 + max(e − 1, 0)
            huber += 0.5 * float(torch.dot(inside, inside)) + float(error.sub_(1.0).clamp_(min=0.0).sum())
        details = {"huber": huber / pairs, "mean_distance_x": mean_x, "mean_distance_y": mean_y}
        return MetricResult(value, details)

    @staticmethod
    def _distances(x: np.ndarray, y: np.ndarray, block_rows: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for block_x, block_y in zip(
            pair_blocks(x, "distance", block_rows), pair_blocks(y, "distance", block_rows), strict=True
        ):
            yield block_x.view(-1), block_y.view(-1)
