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
import textwrap
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def score(
    metric: Any,
    x: np.ndarray,
    y: np.ndarray,
    bootstrap: int,
    confidence: float,
    seed: int,
    progress: Callable[..., Iterable[int]] | None = None,
    description: str = "bootstrap",
) -> dict[str, Any]:
    """``{"value", "details", "ci_low", "ci_high"}`` (intervals ``None`` without bootstrap); the
    replicates go through ``progress(items, description, total=...)`` (``RunContext.progress``)."""
    result = metric(x, y)
    found: dict[str, Any] = {"value": float(result.value), "details": result.details, "ci_low": None, "ci_high": None}
    if bootstrap:
        generator = np.random.default_rng(seed)
        values = []
        replicates: Iterable[int] = range(bootstrap)
        if progress is not None:
            replicates = progress(replicates, description, total=bootstrap)
        for _ in replicates:
            rows = generator.integers(0, len(x), size=len(x))
            values.append(float(metric(x[rows], y[rows]).value))
        tail = (1.0 - confidence) / 2.0
        found["ci_low"], found["ci_high"] = (float(v) for v in np.quantile(values, [tail, 1.0 - tail]))
    return found


@dataclass(frozen=True)
class SmallSample:
    """What a small N does to one class of metrics: ``applies(metric name)``; ``least(d, options)``
    the N below which it warns."""

    label: str
    applies: Callable[[str], bool]
    least: Callable[[int, dict[str, Any]], int]
    means: str


SMALL_SAMPLES = (
    SmallSample(
        "CKA",
        lambda name: "cka" in name.split("_"),
        lambda d, options: 0 if options.get("debiased") else 2 * d,
        "biased upward: CKA of unrelated features approaches 1 as d/N grows "
        "(--set metric_options.cka.debiased=true, or more samples)",
    ),
    SmallSample(
        "CCA",
        lambda name: name.split("_")[0].endswith("cca"),
        lambda d, options: 2 * d,
        "degenerate: with N < 2d CCA finds near-perfect correlations even in unrelated features; pwcca's own "
        "warning gives the figures (it reduces a side only where d >= N, or with "
        "--set metric_options.pwcca.max_components=K)",
    ),
    SmallSample(
        "k-NN overlap",
        lambda name: "knn" in name.split("_"),
        lambda d, options: 20 * int(options.get("k", 10)),
        "neighbours by chance: the k nearest are more than 5% of the samples, so unrelated features overlap too",
    ),
    SmallSample(
        "pairwise correlations",
        lambda name: name in ("rsa", "geometry", "relational"),
        lambda d, options: 50,
        "noisy: the N(N-1)/2 pairs share only N samples",
    ),
)
BOOTSTRAP_LEAST = 50


def small_sample_warnings(
    metrics: list[str], shapes: dict[str, tuple[int, int]], options: dict[str, dict[str, Any]], bootstrap: int
) -> list[str]:
    """One line per class of metrics that this N makes unreliable (and one for the bootstrap),
    naming the metrics, the models, their N and d; ``shapes`` is ``{model: (N, d)}``.

    >>> small_sample_warnings(["cka", "rsa"], {"vq": (20, 64), "fsq": (20, 64)}, {}, 0)[0].split(": biased")[0]
    'small N for CKA (cka): vq, fsq: N = 20 < 128 (2·d = 2×64)'
    """
    lines = []
    for rule in SMALL_SAMPLES:
        chosen = [name for name in metrics if rule.applies(name)]
        if not chosen:
            continue
        found = {}
        for model, (count, dims) in shapes.items():
            least = max(rule.least(dims, options.get(name, {})) for name in chosen)
            if count < least:
                found[model] = (count, dims, least)
        if found:
            lines.append(
                f"small N for {rule.label} ({', '.join(chosen)}): {_affected(found, rule.label)}: {rule.means}"
            )
    few = {model: (count, dims, BOOTSTRAP_LEAST) for model, (count, dims) in shapes.items() if count < BOOTSTRAP_LEAST}
    if bootstrap and few:
        lines.append(
            f"small N for the bootstrap: {_affected(few, '')}: the intervals are wide, and resampling so few rows "
            "(with duplicates) makes them rough; use more samples"
        )
    return lines


def _affected(found: dict[str, tuple[int, int, int]], label: str) -> str:
    """``vq, fsq: N = 20 < 128 (2·d = 2×64)``: the models (at most 4 named per group) with the same N
    and threshold."""
    groups: dict[tuple[int, int, int], list[str]] = {}
    for model, key in found.items():
        groups.setdefault(key, []).append(model)
    parts = []
    for (count, dims, least), models in groups.items():
        shown = models[:4] + ([f"{len(models) - 4} more"] if len(models) > 4 else [])
        why = f" (2·d = 2×{dims})" if label in ("CKA", "CCA") else ""
        parts.append(f"{', '.join(shown)}: N = {count} < {least}{why}")
    return "; ".join(parts)


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
            axis.margins(y=0.1)  # room for the value above the highest bar
            for position, value in enumerate(values):
                if math.isfinite(value):  # above the bar and its error bar, not through it
                    top = value + (errors[1][position] if errors is not None and value >= 0 else 0.0)
                    axis.annotate(
                        f"{value:.3f}",
                        (position, top),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        for axis in list(axes.flat)[len(metrics) :]:
            axis.set_visible(False)
        # wrapped to the figure's width (about 11 characters of 11 pt per inch), never cut
        figure.suptitle(textwrap.fill(_label(title, 400), width=int(10 * width * columns)), fontsize=11)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
    return write_atomic(path, buffer.getvalue())


def _label(text: str, longest: int = 40) -> str:
    """``text`` as a chart can draw it: a lone surrogate escaped, at most ``longest`` characters."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= longest else text[: longest - 1] + "…"
