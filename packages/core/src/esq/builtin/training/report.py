"""What a training run reports: tidy result rows a paper can use, one wide row to print, the
confusion matrix as a file, and a warning when a quantizer hardly uses its codebook.

Every row is one metric of one model on the test split, with the columns that tell rows apart
(``setting_columns``): backbone, quantizer and its resolved options (``codebook_size``,
``bottleneck_dim``, ``levels``...), ``bits_per_vector``, ``compression_ratio``, dataset, split,
seed, epochs. ``metric`` is ``mean_iou``, ``pixel_accuracy``, ``sample_iou_mean``,
``sample_iou_median``; ``iou`` once per class (``class`` names it; a class absent from the test
set, neither labelled nor predicted anywhere, has no IoU: ``value`` is empty, not 0); and with a
quantizer whose codes can be counted ``codebook_usage``, ``perplexity``, ``dead_codes`` and
``distinct_codes`` over the whole test set, plus the same per codebook ``level`` for quantizers
with several (rvq, residual_fsq).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from esq import write_atomic

LOW_USAGE = 0.10
SCORES = ("mean_iou", "pixel_accuracy", "sample_iou_mean", "sample_iou_median")
USAGE = ("codebook_usage", "perplexity", "dead_codes", "distinct_codes")
# the printed summary: one wide row per model
TABLE = ("mean_iou", "pixel_accuracy", "sample_iou_mean", "sample_iou_median", "codebook_usage", "perplexity")
CONFUSION_MATRIX = "confusion_matrix.csv"


def _number(value: float) -> float | None:
    """``value``, or ``None`` where it is NaN (results.json holds no NaN; a CSV cell stays empty)."""
    return None if value is None or math.isnan(value) else float(value)


def setting_columns(config: Any, module: Any, quantizer: str, epochs: int) -> dict[str, Any]:
    """The columns that say which model and setting a row is about.

    A quantizer's option is under its own name (``codebook_size``); one whose name another
    column has taken is ``quantizer_<name>``."""
    settings: dict[str, Any] = {"backbone": config.model, "quantizer": quantizer}
    component = module.model.quantizer
    options = dict(getattr(component, "options", {}) or {}) if component is not None else {}
    options.pop("input_dim", None)
    base = {
        "bits_per_vector": module.bits_per_vector,
        "compression_ratio": module.compression_ratio,
        "dataset": config.dataset,
        "split": "test",
        "seed": config.seed,
        "epochs": epochs,
    }
    for name, value in options.items():
        settings[f"quantizer_{name}" if name in settings or name in base or name == "model" else name] = value
    return {"model": config.model, **settings, **base}


def tidy_row(settings: dict[str, Any], metric: str, value: float | None, **keys: Any) -> dict[str, Any]:
    """One result row: who (``model``, ``backbone``, ``quantizer``), what (``metric``, ``class``,
    ``level``: ``None`` where they do not apply), ``value``, then the other settings: every row has
    the same columns in the same order, so ``results.csv`` reads left to right.

    >>> list(tidy_row({"model": "m", "backbone": "b", "quantizer": "vq", "seed": 0}, "iou", 0.5, **{"class": "cat"}))
    ['model', 'backbone', 'quantizer', 'metric', 'class', 'level', 'value', 'seed']
    """
    who = {name: settings[name] for name in ("model", "backbone", "quantizer")}
    what = {"metric": metric, "class": keys.get("class"), "level": keys.get("level"), "value": value}
    return {**who, **what, **{name: value for name, value in settings.items() if name not in who}}


def result_rows(settings: dict[str, Any], report: dict[str, Any], class_names: list[str]) -> list[dict[str, Any]]:
    """The test split's tidy rows (see the module's docstring) from ``SegmentationModule.test_report``."""
    scores, usage = report["scores"], report.get("usage")
    rows = [tidy_row(settings, name, _number(scores[name])) for name in SCORES]
    for name, value in zip(class_names, scores["per_class_iou"], strict=True):
        rows.append(tidy_row(settings, "iou", _number(value), **{"class": name}))
    if usage:
        rows += [tidy_row(settings, name, _number(usage[name])) for name in USAGE]
        if len(usage["levels"]) > 1:
            for level, figures in enumerate(usage["levels"]):
                rows += [tidy_row(settings, name, _number(figures[name]), level=level) for name in USAGE]
    return rows


def table_row(settings: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The one wide row printed at the end of ``esq run squeeze``/``baseline``."""
    values = {**report["scores"], **(report.get("usage") or {})}
    row = {"model": settings["model"], "quantizer": settings["quantizer"]}
    row.update({name: _number(values[name]) for name in TABLE if name in values})
    row.update(bits_per_vector=settings["bits_per_vector"], compression_ratio=settings["compression_ratio"])
    return row


def confusion_matrix_csv(confusion: list[list[int]], class_names: list[str]) -> str:
    """The confusion matrix as CSV: a row per label, a column per prediction, headed by class names.

    >>> print(confusion_matrix_csv([[3, 1], [0, 2]], ["sky", "road"]), end="")
    label \\ predicted,sky,road
    sky,3,1
    road,0,2
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label \\ predicted", *class_names])
    writer.writerows([name, *counts] for name, counts in zip(class_names, confusion, strict=True))
    return buffer.getvalue()


def write_confusion_matrix(context: Any, report: dict[str, Any], class_names: list[str]) -> None:
    """Write ``confusion_matrix.csv`` in the run directory."""
    path = context.path(CONFUSION_MATRIX)
    write_atomic(path, confusion_matrix_csv(report["scores"]["confusion_matrix"], class_names))
    context.log.info("confusion matrix of the test split (pixels; rows: label, columns: prediction): %s", path)


def warn_low_usage(context: Any, settings: dict[str, Any], usage: dict[str, Any] | None) -> None:
    """A warning when the quantizer used under 10% of a codebook (of any level) on the test set."""
    if not usage:
        return
    levels = usage["levels"]
    for level, figures in enumerate(levels):
        if figures["codebook_usage"] >= LOW_USAGE:
            continue
        where = f" at level {level}" if len(levels) > 1 else ""
        radix, vectors = usage["code_radix"], figures.get("vectors", math.inf)
        few = (
            f"; the test set's {vectors:.0f} vectors could use at most {100 * vectors / radix:.1f}%, so score on more "
            "images to tell"
            if vectors < radix
            else ""
        )
        context.log.warning(
            "%s + %s used %.1f%% of its codebook%s on the test set (%d of %d codes, perplexity %.1f): the head "
            "reads few distinct vectors, so bits_per_vector (%.1f) overstates what the codes carry (log2 of the "
            "perplexity is closer); train longer, or use a smaller codebook%s",
            settings["backbone"],
            settings["quantizer"],
            100 * figures["codebook_usage"],
            where,
            figures["distinct_codes"],
            radix,
            figures["perplexity"],
            settings["bits_per_vector"],
            few,
        )
