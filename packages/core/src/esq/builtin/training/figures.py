"""The grids of ``esq run visualize``: one row per sample, columns image, ground truth, baseline
prediction and quantized prediction, each prediction titled with its IoU; one colour per class,
named in a legend; ignored pixels grey."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

IGNORED_COLOUR = (0.55, 0.55, 0.55)


def class_colours(count: int) -> np.ndarray:
    """``(count, 3)`` RGB in 0–1: black for class 0 (background), then tab10/tab20 colours."""
    import matplotlib

    table = matplotlib.colormaps["tab10" if count <= 11 else "tab20"]
    colours = [(0.0, 0.0, 0.0)] + [table(index % table.N)[:3] for index in range(count - 1)]
    return np.array(colours[:count], dtype=np.float64)


def colour_mask(mask: np.ndarray, colours: np.ndarray, ignore_index: int) -> np.ndarray:
    """An ``(H, W)`` class-id mask as an ``(H, W, 3)`` image."""
    image = np.empty((*mask.shape, 3), dtype=np.float64)
    ignored = mask == ignore_index
    image[~ignored] = colours[np.clip(mask[~ignored], 0, len(colours) - 1)]
    image[ignored] = IGNORED_COLOUR
    return image


def _iou_text(value: float) -> str:
    return "IoU n/a" if math.isnan(value) else f"IoU {value:.3f}"


def plot_samples(
    path: Path, title: str, samples: list[dict[str, Any]], class_names: list[str], ignore_index: int
) -> Path:
    """Write the grid: each sample is ``{"index", "image" (3, H, W) uint8, "truth",
    "baseline", "quantized" (H, W) ids, "baseline_iou", "quantized_iou"}``. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from esq import write_atomic

    colours = class_colours(len(class_names))
    rows = max(1, len(samples))
    figure, axes = plt.subplots(rows, 4, figsize=(11, 3.0 * rows + 1.0), squeeze=False, layout="constrained")
    headers = ("image", "ground truth", "baseline", "quantized")
    for row, sample in zip(axes, samples, strict=False):
        panels = (
            np.transpose(sample["image"], (1, 2, 0)),
            colour_mask(sample["truth"], colours, ignore_index),
            colour_mask(sample["baseline"], colours, ignore_index),
            colour_mask(sample["quantized"], colours, ignore_index),
        )
        labels = (
            f"#{sample['index']}",
            "",
            _iou_text(sample["baseline_iou"]),
            _iou_text(sample["quantized_iou"]),
        )
        for axis, panel, header, label in zip(row, panels, headers, labels, strict=True):
            axis.imshow(panel, interpolation="nearest")
            axis.set_title(f"{header}\n{label}" if label else header, fontsize=10)
            axis.set_xticks([])
            axis.set_yticks([])
    if not samples:
        for axis in axes.flat:
            axis.set_visible(False)
    handles = [Patch(color=colours[i], label=f"{i} {name}") for i, name in enumerate(class_names)]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=9, frameon=False)
    figure.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())
