"""How well a score follows a degradation's severity: Spearman's rank correlation between level
and score, and the plots of the best configurations.

>>> spearman([1, 2, 3, 4], [0.1, 0.4, 0.3, 0.9])
0.8
>>> spearman([1, 2, 3], [5.0, 5.0, 5.0])  # a score that never moves orders nothing
0.0
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats


def spearman(levels: Sequence[float], scores: Sequence[float]) -> float:
    """Spearman's ρ between ``levels`` and ``scores``: 1 when the score rises with every level.

    A constant score gives 0 (it does not order the levels; ρ itself is undefined there); a
    non-finite score gives NaN.
    """
    if len(levels) != len(scores) or len(levels) < 2:
        raise ValueError(f"spearman needs two equally long sequences of at least 2, got {len(levels)}, {len(scores)}")
    if not all(math.isfinite(score) for score in scores):
        return math.nan
    if np.ptp(np.asarray(scores, dtype=np.float64)) == 0 or np.ptp(np.asarray(levels, dtype=np.float64)) == 0:
        return 0.0
    return round(float(stats.spearmanr(levels, scores).statistic), 12)


def plot_configuration(path: Path, title: str, curves: dict[str, dict[str, Any]], clean: float | None = None) -> Path:
    """One panel per degradation: score against level, ρ in the panel's title, and the clean
    evaluation images' score as a dashed line. ``curves`` maps a degradation to ``{"levels":
    [...], "scores": [...], "monotonicity": ρ}``. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from esq import write_atomic

    columns = min(len(curves), 3)
    rows = math.ceil(len(curves) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis, (degradation, curve) in zip(axes.flat, curves.items(), strict=False):
        axis.plot(curve["levels"], curve["scores"], marker="o")
        if clean is not None and math.isfinite(clean):
            axis.axhline(clean, linestyle="--", color="grey", linewidth=1, label="clean")
            axis.legend(fontsize=8)
        axis.set_title(f"{degradation}  (ρ = {curve['monotonicity']:.3f})", fontsize=10)
        axis.set_xlabel("level")
        axis.set_ylabel("score")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(curves) :]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())
