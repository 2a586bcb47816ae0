"""The metric half of ``esq run degradation``: pooled vectors from cached activations, scores per
level, monotonicity, and the run's rows, ranking and plots. Nothing here runs a backbone."""

from __future__ import annotations

import math
from typing import Any

from esq import DataError, EsqError, Results, RunContext, error_line


def _channels(chunks: list[Any]) -> int:
    """Channels of a layer's ``(N, C, H, W)`` maps, or the width of its ``(N, T, D)`` tokens."""
    shape = chunks[0].shape
    return shape[1] if len(shape) == 4 else shape[-1]


def finite_mean(values: list[float]) -> float:
    finite = [value for value in values if math.isfinite(value)]
    return sum(finite) / len(finite) if finite else math.nan


def _too_wide(config: Any, transform: Any, width: int) -> str | None:
    if transform.pooling == "gram" and width > config.max_gram_dim:
        return f"skipped: Gram vectors of {width} values exceed max_gram_dim={config.max_gram_dim}"
    final = transform.pca_dim or width
    if final > config.max_feature_dim:
        return f"skipped: {final} features exceed max_feature_dim={config.max_feature_dim}; add _pca to the transform"
    return None


def score_backbone(
    config: Any,
    backbone: str,
    layer_groups: dict[str, list[str]],
    activations: dict[str, Any],
    entries: list[Any],
    degradations: dict[str, Any],
    context: RunContext,
) -> list[dict[str, Any]]:
    """One record per layer configuration × transform × metric entry."""
    from esq.builtin.pipelines.degradation.feature_transforms import (
        apply_pca,
        parse_transform,
        pool_chunks,
        pooled_width,
    )
    from esq.builtin.pipelines.degradation.monotonicity import level_label, spearman

    pooled: dict[tuple[str, Any, str, str], Any] = {}

    def vectors(set_name: str, level: Any, group: list[str], pooling: str) -> Any:
        import torch

        source = activations[set_name] if level is None else activations[set_name][level]
        parts = []
        for layer in group:
            key = (set_name, level, layer, pooling)
            if key not in pooled:
                where = f"{backbone} layer {layer} on the {set_name} images" + (f" at level {level}" if level else "")
                pooled[key] = pool_chunks(source[layer], pooling, where)
            parts.append(pooled[key])
        return torch.cat(parts, dim=1)

    levels = {name: list(degradation.levels) for name, degradation in degradations.items()}
    records = []
    for group_name, group in layer_groups.items():
        for transform_name in config.mode_value("transforms"):
            transform = parse_transform(transform_name, config.pca_dim)
            width = sum(pooled_width(transform.pooling, _channels(activations["reference"][layer])) for layer in group)
            base = {"backbone": backbone, "layers": group_name, "transform": transform_name}
            skipped = _too_wide(config, transform, width)
            if skipped:
                context.log.warning("%s %s %s: %s", backbone, group_name, transform_name, skipped)
                records += [_record(base, entry, skipped, None, levels, {}) for entry in entries]
                continue
            try:
                reference = vectors("reference", None, group, transform.pooling)
                others = {("clean", None): vectors("clean", None, group, transform.pooling)}
                for name, values in levels.items():
                    for level in values:
                        others[(name, level)] = vectors(name, level, group, transform.pooling)
                if transform.pca_dim:
                    reference, others = apply_pca(reference, others, transform.pca_dim)
            except EsqError as error:  # this layer configuration fails; the others are still scored
                context.log.warning("%s %s %s: %s", backbone, group_name, transform_name, error)
                records += [_record(base, entry, "failed", None, levels, {}, error_line(error)) for entry in entries]
                continue
            where = f"{backbone} {group_name} {transform_name}"
            scored = _score_entries(reference.numpy(), others, entries, where, context)
            for entry, scores in zip(entries, scored, strict=True):
                if isinstance(scores, str):  # one metric that cannot run here: the others still could
                    records.append(_record(base, entry, "failed", None, levels, {}, scores))
                    continue
                curves = {
                    name: {
                        "levels": values,
                        "scores": [scores[(name, level)] for level in values],
                        "monotonicity": spearman(values, [scores[(name, level)] for level in values])
                        if len(values) > 1
                        else math.nan,
                    }
                    for name, values in levels.items()
                }
                records.append(_record(base, entry, "ok", scores[("clean", None)], levels, curves))
    labels = {name: level_label(degradation) for name, degradation in degradations.items()}
    for record in records:  # what each degradation's level is, for the plots' axes and results.json
        for name, curve in record["degradations"].items():
            curve["level_label"] = labels[name]
    return records


def _score_entries(
    reference: Any, others: dict[tuple[str, Any], Any], entries: list[Any], where: str, context: RunContext
) -> list[dict[tuple[str, Any], float] | str]:
    """Each metric entry's score of every other set against ``reference``, or the one line saying
    why it could not be computed. One progress step per score (metric × set), so a long metric
    (a mixture fitted at every level) shows where it is."""
    work = [(index, key, matrix) for index in range(len(entries)) for key, matrix in others.items()]
    scorers: dict[int, Any] = {}
    results: list[dict[tuple[str, Any], float] | str] = [{} for _ in entries]
    for index, key, matrix in context.progress(work, f"{where}: metrics", total=len(work)):
        scores = results[index]
        if isinstance(scores, str):
            continue
        entry = entries[index]
        try:
            if index not in scorers:
                scorers[index] = context.registry("metrics").create(entry.metric, **entry.options)
            scores[key] = float(scorers[index](reference, matrix.numpy()).value)
        except Exception as error:  # this metric fails here; the other metrics still run
            results[index] = error_line(error)
            context.log.warning("%s %s: %s", where, entry.metric, results[index])
    return results


def _record(
    base: dict[str, Any],
    entry: Any,
    status: str,
    clean: float | None,
    levels: dict[str, list[Any]],
    curves: dict[str, dict[str, Any]],
    error: str | None = None,
) -> dict[str, Any]:
    """A configuration's record; ``status`` is ``ok``, ``skipped: <why>`` or ``failed`` (``error`` why)."""
    if not curves:
        curves = {
            name: {"levels": values, "scores": [math.nan] * len(values), "monotonicity": math.nan}
            for name, values in levels.items()
        }
    return {
        **base,
        "distribution": entry.distribution,
        "metric": entry.metric,
        "options": entry.options,
        "status": status,
        **({"error": error} if error is not None else {}),
        "clean_score": math.nan if clean is None else clean,
        "mean_monotonicity": finite_mean([curve["monotonicity"] for curve in curves.values()]),
        "degradations": curves,
    }


def _reason(record: dict[str, Any]) -> str:
    return record.get("error") or record["status"].removeprefix("skipped: ")


def _row_status(record: dict[str, Any]) -> dict[str, Any]:
    """``status`` ok, skipped or failed (the runner counts the failed ones), and why if not ok."""
    if record["status"] == "ok":
        return {"status": "ok"}
    return {"status": "failed" if record["status"] == "failed" else "skipped", "error": _reason(record)}


def _label(record: dict[str, Any]) -> str:
    model = "" if record["distribution"] == "-" else f" · {record['distribution']}"
    return f"{record['backbone']} · {record['layers']} · {record['transform']}{model} · {record['metric']}"


def summarise(config: Any, records: list[dict[str, Any]], context: RunContext) -> Results:
    """Rank by mean monotonicity (NaN last), write the top-k plots, and build the results. A run
    in which no configuration was scored is a ``DataError`` saying why the first was not."""
    from esq.builtin.pipelines.degradation.monotonicity import plot_configuration

    if records and not any(record["status"] == "ok" for record in records):
        first = records[0]
        raise DataError(f"no configuration was scored; {_label(first)}: {_reason(first)}")

    ranked = sorted(
        records,
        key=lambda r: (
            math.isnan(r["mean_monotonicity"]),
            -(r["mean_monotonicity"] if math.isfinite(r["mean_monotonicity"]) else 0),
        ),
    )
    for rank, record in enumerate(ranked, start=1):
        record["rank"] = rank
    scored = [record for record in ranked if record["status"] == "ok"]
    plotted = scored[: config.top_k]
    plots = []
    for rank, record in enumerate(plotted, start=1):
        title = f"#{rank}  {_label(record)}  (mean ρ = {record['mean_monotonicity']:.3f})"
        path = context.path(f"monotonicity_top{rank}.png")
        plot_configuration(path, title, record["degradations"], record["clean_score"], _metric_axis(config, record))
        plots.append(path.name)
    if scored:
        plots.append(_heatmap(config, scored, context))
    rows = [
        {
            "rank": record["rank"],
            "backbone": record["backbone"],
            "layers": record["layers"],
            "transform": record["transform"],
            "distribution": record["distribution"],
            "metric": record["metric"],
            "degradation": name,
            "level_label": curve.get("level_label", "level"),
            "levels": curve["levels"],
            "monotonicity": curve["monotonicity"],
            "mean_monotonicity": record["mean_monotonicity"],
            "clean_score": record["clean_score"],
            "first_level_score": curve["scores"][0],
            "last_level_score": curve["scores"][-1],
            **_row_status(record),
        }
        for record in ranked
        for name, curve in record["degradations"].items()
    ]
    table = [
        {
            "rank": record["rank"],
            "configuration": _label(record),
            "mean ρ": record["mean_monotonicity"],
            **{name: curve["monotonicity"] for name, curve in record["degradations"].items()},
        }
        for record in scored[: config.ranking_rows]
    ]
    hidden = hidden_line(len(scored) - len(table), len(ranked) - len(scored), config.ranking_rows)
    if hidden:
        table.append({"rank": "…", "configuration": hidden})
        context.log.info("ranking of %d configurations: %s", len(ranked), hidden)
    summary = {
        "mode": config.mode,
        "n_reference": config.mode_value("n_reference"),
        "n_evaluation": config.mode_value("n_evaluation"),
        "plots": plots,
        "ranking_shows": len(table) - bool(hidden),
        "configurations": ranked,
    }
    return Results(rows=rows, summary=summary, table=table)


def hidden_line(not_shown: int, not_scored: int, ranking_rows: int) -> str | None:
    """What the printed ranking leaves out, in words; ``None`` when it shows every configuration.

    >>> hidden_line(37, 0, 20)
    '37 more not shown (ranking_rows = 20); all in results.csv'
    >>> hidden_line(0, 2, 20)
    '2 not scored (results.csv says why)'
    """
    parts = []
    if not_shown:
        parts.append(f"{not_shown} more not shown (ranking_rows = {ranking_rows}); all in results.csv")
    if not_scored:
        parts.append(f"{not_scored} not scored (results.csv says why)")
    return "; ".join(parts) or None


def _metric_axis(config: Any, record: dict[str, Any]) -> str:
    """The y axis of a configuration's plot: the metric (and its distribution model) and what it compares."""
    model = "" if record["distribution"] == "-" else f" ({record['distribution']})"
    return f"{record['metric']}{model} vs {config.mode_value('n_reference')} reference images"


HEATMAP_ROWS = 40


def _heatmap(config: Any, scored: list[dict[str, Any]], context: RunContext) -> str:
    """``monotonicity_heatmap.png``: ρ of the best ``HEATMAP_ROWS`` scored configurations (rows,
    best first) for each degradation and their mean (columns); the title says how many it leaves out."""
    from esq.builtin.pipelines.degradation.monotonicity import plot_heatmap

    shown = scored[:HEATMAP_ROWS]
    degradations = list(shown[0]["degradations"])
    values = [[record["degradations"][name]["monotonicity"] for name in degradations] for record in shown]
    values = [[*row, record["mean_monotonicity"]] for row, record in zip(values, shown, strict=True)]
    left_out = f", top {len(shown)} of {len(scored)}" if len(shown) < len(scored) else ""
    title = (
        f"Spearman ρ of score vs level, configuration × degradation{left_out}\n"
        f"{config.mode_value('n_reference')} reference, {config.mode_value('n_evaluation')} evaluation images"
    )
    labels = [f"#{record['rank']} {_label(record)}" for record in shown]
    path = context.path("monotonicity_heatmap.png")
    plot_heatmap(path, title, labels, [*degradations, "mean ρ"], values)
    return path.name
