"""Similarity metrics on paired features, with bootstrap confidence intervals, and the grouped bar
chart of ``esq run similarity``.

A bootstrap replicate draws N rows with replacement (seeded, the same rows of both sides) and
computes the metric again; the interval is the percentile interval of the replicates at
``confidence``. Metrics whose value depends on distinct samples (k-NN) see duplicated rows in a
replicate, which biases them down a little: the interval describes sampling variation, not a
correction.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def score(metric: Any, x: np.ndarray, y: np.ndarray, bootstrap: int, confidence: float, seed: int) -> dict[str, Any]:
    """``{"value", "details", "ci_low", "ci_high"}`` (intervals ``None`` without bootstrap)."""
    result = metric(x, y)
    found: dict[str, Any] = {"value": float(result.value), "details": result.details, "ci_low": None, "ci_high": None}
    if bootstrap:
        generator = np.random.default_rng(seed)
        values = []
        for _ in range(bootstrap):
            rows = generator.integers(0, len(x), size=len(x))
            values.append(float(metric(x[rows], y[rows]).value))
        tail = (1.0 - confidence) / 2.0
        found["ci_low"], found["ci_high"] = (float(v) for v in np.quantile(values, [tail, 1.0 - tail]))
    return found


def plot_metrics(path: Path, rows: list[dict[str, Any]], title: str) -> Path:
    """One panel per metric, one bar per model, with the confidence interval when there is one.
    Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from esq import write_atomic

    metrics = list(dict.fromkeys(row["metric"] for row in rows))
    models = list(dict.fromkeys(row["model"] for row in rows))
    columns = min(len(metrics), 3)
    lines = math.ceil(len(metrics) / columns)
    with warnings.catch_warnings():  # matplotlib's notes on odd names (a missing glyph, a long label)
        warnings.simplefilter("ignore")
        width = max(4.0, 0.6 * len(models) + 1.5)
        figure, axes = plt.subplots(
            lines, columns, figsize=(width * columns, 3.4 * lines), squeeze=False, layout="constrained"
        )
        colours = matplotlib.colormaps["tab10"]
        for axis, metric in zip(axes.flat, metrics, strict=False):
            chosen = {row["model"]: row for row in rows if row["metric"] == metric}
            values = [chosen[model]["value"] if model in chosen else np.nan for model in models]
            errors = None
            if all(chosen.get(model, {}).get("ci_low") is not None for model in models):
                errors = np.array(
                    [
                        [v - chosen[m]["ci_low"] for m, v in zip(models, values, strict=True)],
                        [chosen[m]["ci_high"] - v for m, v in zip(models, values, strict=True)],
                    ]
                ).clip(min=0)
            axis.bar(
                range(len(models)), values, yerr=errors, capsize=3, color=[colours(i % 10) for i in range(len(models))]
            )
            axis.set_xticks(
                range(len(models)), [_label(model) for model in models], rotation=30, ha="right", fontsize=8
            )
            axis.set_title(_label(metric), fontsize=10)
            axis.grid(axis="y", alpha=0.3)
            for position, value in enumerate(values):
                if math.isfinite(value):
                    axis.annotate(f"{value:.3f}", (position, value), ha="center", va="bottom", fontsize=7)
        for axis in list(axes.flat)[len(metrics) :]:
            axis.set_visible(False)
        figure.suptitle(_label(title, 120), fontsize=11)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
    return write_atomic(path, buffer.getvalue())


def _label(text: str, longest: int = 40) -> str:
    """``text`` as a chart can draw it: a lone surrogate escaped, at most ``longest`` characters."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= longest else text[: longest - 1] + "…"
