"""How well a score follows a degradation's severity: Spearman's rank correlation between level
and score, the plots of the best configurations (axes labelled with the level's name and unit
and the metric) and the heatmap of ρ, configuration × degradation.

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


def level_label(degradation: Any) -> str:
    """The x-axis label of a degradation's levels: its ``level_name`` and, in brackets, its
    ``level_unit``, both optional attributes of the degradation (a plugin's as well as esq's);
    ``"level"`` for one that declares neither.

    >>> class Blur:
    ...     level_name, level_unit = "blur σ", "px"
    >>> level_label(Blur()), level_label(object())
    ('blur σ (px)', 'level')
    """
    name = str(getattr(degradation, "level_name", "") or "level")
    unit = str(getattr(degradation, "level_unit", "") or "")
    return f"{name} ({unit})" if unit else name


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from esq import write_atomic

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())


def configuration_figure(
    title: str, curves: dict[str, dict[str, Any]], clean: float | None = None, metric: str = "score"
) -> Any:
    """The figure of one configuration: a panel per degradation, ``metric`` against the level
    (x labelled by the curve's ``level_label``, "level" without one), ρ in the panel's title,
    the clean evaluation images' score as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(len(curves), 3)
    rows = math.ceil(len(curves) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis, (degradation, curve) in zip(axes.flat, curves.items(), strict=False):
        axis.plot(curve["levels"], curve["scores"], marker="o")
        if clean is not None and math.isfinite(clean):
            axis.axhline(clean, linestyle="--", color="grey", linewidth=1, label="clean")
            axis.legend(fontsize=8)
        axis.set_title(f"{degradation}  (ρ = {curve['monotonicity']:.3f})", fontsize=10)
        axis.set_xlabel(curve.get("level_label") or "level")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(curves) :]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_configuration(
    path: Path, title: str, curves: dict[str, dict[str, Any]], clean: float | None = None, metric: str = "score"
) -> Path:
    """:func:`configuration_figure` as a PNG at ``path``, written atomically. ``curves`` maps a
    degradation to ``{"levels": [...], "scores": [...], "monotonicity": ρ, "level_label": ...}``."""
    return _save(configuration_figure(title, curves, clean, metric), path)


def heatmap_figure(title: str, configurations: list[str], degradations: list[str], values: Any) -> Any:
    """Spearman's ρ of each configuration (a row) for each degradation (a column), on a
    diverging scale from −1 to 1, every cell written out; NaN cells are grey and say "n/a"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(values, dtype=np.float64).reshape(len(configurations), len(degradations))
    height = 1.6 + 0.32 * len(configurations)
    width = 2.5 + 0.075 * max(len(label) for label in configurations) + 0.9 * len(degradations)
    figure, axis = plt.subplots(figsize=(max(width, 6.0), height))
    colormap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="lightgrey")
    image = axis.imshow(np.ma.masked_invalid(values), cmap=colormap, vmin=-1, vmax=1, aspect="auto")
    axis.set_xticks(range(len(degradations)), degradations, rotation=30, ha="right", fontsize=9)
    axis.set_yticks(range(len(configurations)), configurations, fontsize=8)
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            value = values[row, column]
            text = "n/a" if not math.isfinite(value) else f"{value:.2f}"
            dark = math.isfinite(value) and abs(value) > 0.6
            axis.text(column, row, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    figure.colorbar(image, ax=axis, label="Spearman ρ (level vs score)", fraction=0.05, pad=0.02)
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_heatmap(path: Path, title: str, configurations: list[str], degradations: list[str], values: Any) -> Path:
    """:func:`heatmap_figure` as a PNG at ``path``, written atomically."""
    return _save(heatmap_figure(title, configurations, degradations, values), path)
