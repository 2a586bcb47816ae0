"""``esq run similarity``: how much a quantizer changed a backbone's embeddings, by the similarity
metrics (CKA, PWCCA, geometry, RSA, relational, Jaccard k-NN, and any a plugin adds).

Either every checkpoint in ``checkpoints_dir`` (esq's ``.ckpt``, the previous tool's ``.pth``):
original features (the frozen backbone) against quantized ones (through the checkpoint's
quantizer), on a split of the data it was trained on; or two feature files (``features_a``,
``features_b``) compared as they are. Writes the previous tool's JSON (``output``: ``{model:
{metric: value}}``), the tidy ``results.csv``, ``metrics.png`` (a bar per model in a panel per
metric) and, with ``bootstrap`` > 0, percentile confidence intervals for every value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal

from esq import ConfigError, DataError, PipelineConfig, Results, RunContext, check_device, run_file_name


@dataclass
class SimilarityConfig(PipelineConfig):
    """Options of ``esq run similarity`` (the previous ``evaluate`` command's names)."""

    checkpoints_dir: str | None = field(default=None, metadata={"help": "folder of .ckpt / .pth files"})
    features_a: str | None = field(default=None, metadata={"help": "or two feature files (.npy, .pt, .safetensors)"})
    features_b: str | None = None
    split: Literal["train", "val", "test", "trainval"] = "test"
    dataset: str | None = field(default=None, metadata={"help": "None: the data each checkpoint was trained on"})
    data_dir: str | None = field(default=None, metadata={"help": "that dataset's folder, if it moved"})
    backbone: str | None = field(default=None, metadata={"help": "refuse checkpoints of another backbone"})
    metrics: list[str] | None = field(default=None, metadata={"help": "None: every installed similarity metric"})
    metric_options: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata={"help": "per metric, e.g. --set metric_options.jaccard_knn.k=20"}
    )
    pooling: Literal["gap", "tokens"] = "gap"
    tokens_per_image: int = field(default=16, metadata={"help": "with pooling = tokens: positions drawn per image"})
    batch_size: int = 8
    bootstrap: int = field(default=0, metadata={"help": "bootstrap replicates for confidence intervals; 0: none"})
    confidence: float = 0.95
    output: str = field(default="similarity.json", metadata={"help": "the previous tool's {model: {metric: value}}"})
    visualize: str = field(default="metrics.png", metadata={"help": "the bar chart's file name"})
    results: str | None = field(
        default=None, metadata={"help": "only draw and tabulate a previous similarity.json (no features)"}
    )
    device: str = field(default="cpu", metadata={"help": "where checkpoints extract features: cpu, cuda, cuda:1..."})

    def __post_init__(self) -> None:
        super().__post_init__()
        from esq.builtin.compat import backbone_name

        files = (self.features_a, self.features_b)
        sources = [self.checkpoints_dir is not None, any(path is not None for path in files), self.results is not None]
        if sum(sources) != 1:
            raise ValueError("give one of checkpoints_dir, features_a and features_b, or results")
        if any(path is not None for path in files) and None in files:
            raise ValueError("features_a and features_b go together: give both files")
        for option, least in (("tokens_per_image", 1), ("batch_size", 1), ("bootstrap", 0)):
            if getattr(self, option) < least:
                raise ValueError(f"{option} must be at least {least}, got {getattr(self, option)}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence}")
        for option, suffix in (("output", ".json"), ("visualize", ".png")):
            run_file_name(option, getattr(self, option), suffix)
        if self.backbone is not None:
            self.backbone = backbone_name(self.backbone)


def metric_names(config: SimilarityConfig, components: Any) -> list[str]:
    """The metrics to compute: those named (checked), or every installed similarity metric;
    ``components`` (the run's context or the loaded plugins) has ``registry(kind)``."""
    metrics = components.registry("metrics")
    if config.metrics is None:
        names = [spec.name for spec in metrics.specs() if spec.kind == "similarity"]
        if not names:
            raise ConfigError("no similarity metric is installed: install esq-metrics, or load one with --plugin")
        return names
    for name in config.metrics:
        if metrics.spec(name).kind != "similarity":
            raise ConfigError(f"metrics: {name!r} is a {metrics.spec(name).kind} metric, not a similarity metric")
    return list(config.metrics)


def check(config: SimilarityConfig, plugins: Any) -> None:
    """Before the run directory exists: each metric is installed and takes its options, and the
    files named are there."""
    from esq.builtin.pipelines.similarity.features import checkpoint_files, read_pair

    check_device("similarity", "device", config.device)
    if config.checkpoints_dir is not None:
        checkpoint_files(config.checkpoints_dir)
    if config.features_a is not None:
        read_pair(config.features_a, config.features_b)
    if config.results is not None:
        read_results(config.results)
        return
    names = metric_names(config, plugins)
    unused = sorted(set(config.metric_options) - set(names))
    if unused:
        raise ConfigError(
            f"metric_options.{unused[0]}: {unused[0]!r} is not among the metrics computed ({', '.join(names)})"
        )
    for name in names:
        try:
            plugins.registry("metrics").check(name, **config.metric_options.get(name, {}))
        except ConfigError as error:
            raise ConfigError(f"metric_options.{name}: {error}") from None


def _with_interval(found: dict[str, Any]) -> str:
    """``0.8899 [0.871, 0.905]``: a value and its bootstrap interval, for the table."""
    return f"{found['value']:.4g} [{found['ci_low']:.3g}, {found['ci_high']:.3g}]"


def _split(settings: dict[str, Any], split: str) -> Any:
    import torch.utils.data

    from esq.builtin.data.segmentation import open_segmentation

    if split != "trainval":
        return open_segmentation(**settings, split=split)
    return torch.utils.data.ConcatDataset([open_segmentation(**settings, split=part) for part in ("train", "val")])


def _pairs(config: SimilarityConfig, context: RunContext) -> Any:
    """``(model name, facts, features)`` for each checkpoint, or once for the two files:
    ``features()`` gives the paired ``(x, y)`` and more facts, or raises why it cannot."""
    if config.checkpoints_dir is None:
        from esq.builtin.pipelines.similarity.features import read_pair

        facts = {"features_a": config.features_a, "features_b": config.features_b}
        yield "features", facts, lambda: (*read_pair(config.features_a, config.features_b), {})
        return
    from esq.builtin.pipelines.similarity.features import checkpoint_files, model_names, printable

    for path, name in model_names(checkpoint_files(config.checkpoints_dir), config.checkpoints_dir).items():
        facts = {"checkpoint": printable(str(path))}
        yield name, facts, functools.partial(_checkpoint_pair, config, context, path, name)


def _checkpoint_pair(config: SimilarityConfig, context: RunContext, path: Any, name: str) -> Any:
    """Original and quantized features of one checkpoint, and what it is."""
    from esq.builtin.checkpoints import load_checkpoint
    from esq.builtin.pipelines.similarity.features import checkpoint_features, printable

    expected = {"backbone": config.backbone} if config.backbone else {}
    model = load_checkpoint(path, context.plugins, **expected).to(config.device)
    settings = {key: value for key, value in model.hparams["data"].items() if key != "split"}
    moved = (("dataset", config.dataset), ("data_path", config.data_dir))
    settings.update({key: value for key, value in moved if value})
    try:
        dataset = _split(settings, config.split)
    except (ConfigError, DataError) as error:  # the data it was trained on is not here: which checkpoint
        raise type(error)(f"{printable(str(path))}: its data ({_data_options(settings)}): {error}") from None
    context.log.info(
        "%s: %s + %s on %d %s images",
        name,
        model.hparams["backbone"],
        model.hparams["quantizer"],
        len(dataset),
        config.split,
    )
    x, y = checkpoint_features(
        model,
        dataset,
        context,
        pooling=config.pooling,
        tokens_per_image=config.tokens_per_image,
        batch_size=config.batch_size,
        seed=config.seed,
        description=f"{name}: features",
    )
    facts = {
        "backbone": model.hparams["backbone"],
        "quantizer": model.hparams["quantizer"],
        "bits_per_vector": model.bits_per_vector,
        "dataset": dataset_name(dataset),
    }
    return x, y, facts


def dataset_name(dataset: Any) -> str:
    """The name of a split's dataset (``trainval``: of its parts)."""
    parts = getattr(dataset, "datasets", [dataset])
    return str(getattr(parts[0], "name", type(parts[0]).__name__))


def _data_options(settings: dict[str, Any]) -> str:
    """``dataset=synthetic, data_path=...``: where a checkpoint's data was, for an error line; the
    fix is ``--dataset`` / ``--data-dir``."""
    shown = ", ".join(f"{key}={settings[key]!r}" for key in ("dataset", "data_path") if key in settings)
    return f"{shown}; --dataset, --data-dir override it"


META = "_esq"  # similarity.json's one key that is not a model: the run's split, pooling, N and intervals


@dataclass
class Previous:
    """An earlier result: ``values`` ``{model: {metric: value}}``, ``intervals`` ``{model: {metric:
    (low, high)}}``, ``facts`` (``split``, ``pooling``, ``bootstrap``, ``confidence``, ``samples``)."""

    values: dict[str, dict[str, float | None]]
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, ``None`` for ``null``; ``ValueError`` for anything else."""
    import math

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(value)
    try:
        value = float(value)  # an integer too large for a float: not a number
    except OverflowError:
        raise ValueError(value) from None
    if not math.isfinite(value):
        raise ValueError(value)
    return value


def read_results(path: str) -> Previous:
    """A previous ``similarity.json`` (``{model: {metric: value}}``, values real numbers or ``null``,
    and esq's ``"_esq"`` entry with the intervals and the split) or a similarity run's
    ``results.json`` (or its run folder), or a ``DataError`` naming the file and what is wrong in it."""
    import json
    from pathlib import Path

    from esq.builtin.pipelines.similarity.features import feature_file

    if Path(path).is_dir():  # a run folder: the results.json every run writes
        if not (Path(path) / "results.json").is_file():
            raise DataError(f"results {path}: a folder without results.json; give a similarity run's folder or file")
        path = str(Path(path) / "results.json")
    feature_file(path, "results")
    try:
        document = json.loads(open(path, encoding="utf-8-sig").read())
    except (OSError, ValueError) as error:
        raise DataError(f"results {path}: cannot read it as JSON ({error})") from None
    except RecursionError:
        raise DataError(f"results {path}: nested too deeply to be a similarity.json") from None
    if isinstance(document, dict) and isinstance(document.get("pipeline"), str) and "rows" in document:
        previous = _run_results(path, document)
    else:
        previous = _similarity_json(path, document)
    if not any(value is not None for values in previous.values.values() for value in values.values()):
        status = document.get("status") if isinstance(document, dict) and "rows" in document else None
        if status in ("failed", "interrupted"):  # a run's results.json: why it holds nothing
            why = f" ({str(document.get('error'))[:200]})" if document.get("error") else ""
            raise DataError(f"results {path}: that run was {status}{why}, so it has no values; give a finished run's")
        raise DataError(f"results {path}: no model with a metric value in it; give a similarity.json a run wrote")
    return previous


def _similarity_json(path: str, document: Any) -> Previous:
    import json

    expected = f"results {path}: expected {{model: {{metric: value}}}}, as similarity.json holds"
    if not isinstance(document, dict):
        raise DataError(f"{expected}; it holds a {type(document).__name__}")
    meta = document.pop(META, {})
    for model, values in document.items():
        if not isinstance(values, dict):
            raise DataError(f"{expected}; {model[:40]} is {json.dumps(values)[:40]}, not {{metric: value}}")
    for model, values in document.items():
        for metric, value in values.items():
            try:
                values[metric] = _number(value)
            except ValueError:
                raise DataError(f"{expected}; {model}.{metric} is {json.dumps(value)[:40]}, not a number") from None
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    bad = f"results {path}: {META!r} holds the run's facts ({{'intervals': {{model: {{metric: [low, high]}}}}, ...}})"
    if not isinstance(meta, dict) or not isinstance(meta.get("intervals", {}), dict):
        raise DataError(f"{bad}; it holds {json.dumps(meta)[:40]}")
    for model, found in meta.get("intervals", {}).items():
        for metric, pair in found.items() if isinstance(found, dict) else [(None, found)]:
            try:
                low, high = (_number(value) for value in pair)
                if low is None or high is None or low > high:
                    raise ValueError(pair)
            except (TypeError, ValueError):
                raise DataError(f"{bad}; {model}.{metric} is {json.dumps(pair)[:40]}") from None
            intervals.setdefault(model, {})[metric] = (low, high)
    facts = {key: meta[key] for key in ("split", "pooling", "bootstrap", "confidence", "samples") if key in meta}
    return Previous(document, intervals, facts)


def _run_results(path: str, document: dict[str, Any]) -> Previous:
    """The rows of a similarity run's ``results.json`` (its failed rows left out)."""
    import json

    if document["pipeline"] != "similarity":
        raise DataError(
            f"results {path}: the results.json of `esq run {document['pipeline'][:40]}`; give the results.json "
            "or similarity.json of an `esq run similarity` run"
        )
    rows = document["rows"] if isinstance(document["rows"], list) else None
    if rows is None or not all(isinstance(row, dict) for row in rows):
        raise DataError(f"results {path}: 'rows' is {json.dumps(document['rows'])[:40]}, not a list of rows")
    values: dict[str, dict[str, float | None]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    samples = {}
    for row in rows:
        if row.get("status") == "failed" or "metric" not in row:
            continue
        model, metric = str(row.get("model")), str(row["metric"])
        try:
            value, low, high = (_number(row.get(key)) for key in ("value", "ci_low", "ci_high"))
        except ValueError:
            raise DataError(f"results {path}: row {model}.{metric} has a value that is not a number") from None
        values.setdefault(model, {})[metric] = value
        if low is not None and high is not None:
            intervals.setdefault(model, {})[metric] = (low, high)
        if isinstance(row.get("samples"), int):
            samples[model] = row["samples"]
    summary = document.get("summary") if isinstance(document.get("summary"), dict) else {}
    facts = dict(summary.get("facts", {})) if isinstance(summary.get("facts"), dict) else {}
    facts.setdefault("samples", samples)
    return Previous(values, intervals, facts)


def _title(start: str, facts: dict[str, Any]) -> str:
    """``start`` with what the values were computed on: ``(test split, gap pooling, N = 18)``."""
    parts = []
    if facts.get("split"):
        parts.append(f"{facts['split']} split")
    if facts.get("pooling"):
        parts.append(f"{facts['pooling']} pooling")
    counts = sorted({count for count in facts.get("samples", {}).values() if isinstance(count, int)})
    if counts:
        parts.append(f"N = {counts[0]}" if len(counts) == 1 else f"N = {counts[0]}–{counts[-1]}")
    if facts.get("bootstrap"):
        parts.append(f"{facts.get('confidence', 0.95):.0%} bootstrap intervals")
    return f"{start} ({', '.join(parts)})" if parts else start


def _replot(config: SimilarityConfig, context: RunContext) -> Results:
    """The table and chart of a previous ``similarity.json`` or ``results.json`` (the previous
    ``visualize`` command), with its intervals."""
    import math

    from esq.builtin.pipelines.similarity.scoring import plot_metrics

    previous = read_results(config.results)
    rows, table = [], []
    for model, values in previous.values.items():
        wide: dict[str, Any] = {"model": model}
        table.append(wide)
        for metric, value in values.items():
            low, high = previous.intervals.get(model, {}).get(metric, (None, None))
            found = {"value": math.nan if value is None else value, "ci_low": low, "ci_high": high}
            rows.append({"model": model, "metric": metric, **found})
            wide[metric] = value if low is None or value is None else _with_interval(found)
    if previous.intervals:
        previous.facts.setdefault("bootstrap", True)
    title = _title(f"similarity from {config.results}", previous.facts)
    plot_metrics(context.path(config.visualize), rows, title)
    summary = {"results": config.results, "facts": previous.facts}
    return Results(rows=rows, summary=summary, table=table)


def _setting(config: SimilarityConfig) -> dict[str, Any]:
    """The options a row's value depends on, as results.csv columns."""
    setting: dict[str, Any] = {}
    if config.checkpoints_dir is not None:
        setting.update(split=config.split, pooling=config.pooling)
        if config.pooling == "tokens":
            setting["tokens_per_image"] = config.tokens_per_image
    if config.bootstrap:
        setting.update(bootstrap=config.bootstrap, confidence=config.confidence)
    return setting | {"seed": config.seed}


def _naming(error: Exception, sides: tuple[str, str]) -> Exception:
    """A metric's ``DataError`` about its argument ``x`` or ``y``, told of the features it was given."""
    if not isinstance(error, DataError):
        return error
    text = str(error)
    for argument, side in zip(("x", "y"), sides, strict=True):
        text = text.replace(f"argument `{argument}`", side)
    return DataError(text)


def run(config: SimilarityConfig, context: RunContext) -> Results:
    from esq import error_line, failed_row, to_json, write_atomic
    from esq.builtin.pipelines.similarity.scoring import plot_metrics, score, small_sample_warnings

    if config.results is not None:
        return _replot(config, context)
    metrics = {
        name: context.registry("metrics").create(name, **config.metric_options.get(name, {}))
        for name in metric_names(config, context)
    }
    rows, previous, table, models = [], {}, [], {}
    intervals: dict[str, dict[str, list[float]]] = {}
    for name, facts, features in _pairs(config, context):
        models[name] = dict(facts)
        wide: dict[str, Any] = {"model": name}
        table.append(wide)
        try:
            x, y, more = features()
        except Exception as error:  # one unreadable checkpoint: the others are still scored
            context.log.warning("%s: not scored: %s", name, error_line(error))
            rows.append(failed_row(error, model=name, **facts))
            models[name]["error"] = error_line(error)
            wide.update(dict.fromkeys(metrics, "failed"))
            continue
        models[name].update({**more, "samples": len(x), "dims": [x.shape[1], y.shape[1]]})
        setting = {**more, **_setting(config)}  # the columns that tell this row from another run's
        sides = (
            (f"features_a {config.features_a}", f"features_b {config.features_b}")
            if config.checkpoints_dir is None
            else (f"the original features of {name}", f"the quantized features of {name}")
        )
        for metric_name, metric in metrics.items():
            try:
                found = score(
                    metric,
                    x,
                    y,
                    config.bootstrap,
                    config.confidence,
                    config.seed,
                    progress=context.progress,
                    description=f"{name} {metric_name}: bootstrap",
                )
            except Exception as error:  # a metric that cannot run here: the other metrics still can
                error = _naming(error, sides)
                context.log.warning("%s %s: not computed: %s", name, metric_name, error_line(error))
                rows.append(failed_row(error, model=name, metric=metric_name, samples=len(x), **setting))
                wide[metric_name] = "failed"
                continue
            previous.setdefault(name, {})[metric_name] = found["value"]
            wide[metric_name] = found["value"] if found["ci_low"] is None else _with_interval(found)
            if found["ci_low"] is not None:
                intervals.setdefault(name, {})[metric_name] = [found["ci_low"], found["ci_high"]]
            rows.append(
                {
                    "model": name,
                    "metric": metric_name,
                    **{k: found[k] for k in ("value", "ci_low", "ci_high")},
                    "samples": len(x),
                    **setting,
                }
            )
            models[name].setdefault("details", {})[metric_name] = found["details"]
    shapes = {name: (facts["samples"], max(facts["dims"])) for name, facts in models.items() if "samples" in facts}
    computed = list(dict.fromkeys(row["metric"] for row in rows if row.get("status") != "failed" and "metric" in row))
    for line in small_sample_warnings(computed, shapes, config.metric_options, config.bootstrap):
        context.log.warning("%s", line)
    run_facts: dict[str, Any] = {"bootstrap": config.bootstrap, "confidence": config.confidence}
    if config.checkpoints_dir is not None:  # two feature files have no split or pooling of esq's
        run_facts.update(split=config.split, pooling=config.pooling)
    run_facts["samples"] = {name: count for name, (count, _) in shapes.items()}
    write_atomic(context.path(config.output), to_json({**previous, META: {**run_facts, "intervals": intervals}}) + "\n")
    scored = [row for row in rows if row.get("status") != "failed"]
    if scored:
        start = (
            "similarity of original and quantized features"
            if config.checkpoints_dir is not None
            else "similarity of features_a and features_b"
        )
        plot_metrics(context.path(config.visualize), scored, _title(start, run_facts))
    summary = {"models": models, "output": config.output, "facts": run_facts}
    return Results(rows=rows, summary=summary, table=table)
