"""``esq run demo``, the default job: what squeezing a backbone's features costs, end to end,
offline, in a couple of minutes.

On the built-in synthetic segmentation set (shapes on textured backgrounds) and a tiny backbone
(``tiny_cnn`` from esq-backbones), it trains the baseline head and, for each quantizer (``vq``,
``fsq``, ``lfq``, ``rvq`` by default), a quantizer with its head, each for ``epochs`` epochs; then
scores each on the test split: mean IoU, bits per vector, compression ratio, and every installed
similarity metric between the original and the quantized features (``tokens_per_image`` feature
positions per test image). One table (a row per model), ``results.csv`` (a row per model × metric, with
the settings: ``esq.builtin.training.report``), ``metrics.png``; each model's checkpoints, logs and
``confusion_matrix.csv`` in its own folder (``baseline/``, ``vq/``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from esq import ConfigError, PipelineConfig, Results, RunContext
from esq.builtin.pipelines.components import check_quantizer, check_segmentation_backbone
from esq.builtin.training import NO_QUANTIZER

DEFAULT_QUANTIZERS = ("vq", "fsq", "lfq", "rvq")
# small codebooks for a 32-d tiny backbone: bits per vector from 6 to 12
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "vq": {"codebook_size": 64, "bottleneck_dim": 16},
    "fsq": {"levels": [8, 5, 5], "bottleneck_dim": 16},
    "lfq": {"codebook_size": 64, "bottleneck_dim": 16},
    "rvq": {"num_quantizers": 2, "codebook_size": 64, "bottleneck_dim": 16},
}
# the printed table's columns from training (the similarity metrics follow)
SCORES = ("mean_iou", "codebook_usage", "bits_per_vector", "compression_ratio")


@dataclass
class DemoConfig(PipelineConfig):
    """Options of ``esq run demo``."""

    backbone: str = field(default="tiny_cnn", metadata={"help": "a segmentation backbone"})
    quantizers: list[str] | None = field(
        default=None, metadata={"help": "None: vq, fsq, lfq, rvq (those installed), else every installed one"}
    )
    metrics: list[str] | None = field(default=None, metadata={"help": "None: every similarity metric"})
    quantizer_options: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata={"help": "per quantizer, e.g. --set quantizer_options.vq.codebook_size=256"}
    )
    epochs: int = 4
    lr: float = 3e-3
    batch_size: int = 8
    synthetic_size: int = field(default=96, metadata={"help": "images in the synthetic set (80% train)"})
    image_size: int = 64
    tokens_per_image: int = field(default=32, metadata={"help": "feature positions per test image for the metrics"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for option, least in (("epochs", 1), ("batch_size", 2), ("synthetic_size", 10), ("tokens_per_image", 1)):
            if getattr(self, option) < least:
                raise ValueError(f"{option} must be at least {least}, got {getattr(self, option)}")
        from esq.builtin.pipelines.squeeze import positive_finite

        if not positive_finite(self.lr):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        for option in ("quantizers", "metrics"):
            names = getattr(self, option) or []
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise ValueError(
                    f"{option} lists {', '.join(map(repr, twice))} more than once; list each once (each model "
                    f"trains into its own folder, named after its quantizer)"
                )


def quantizer_names(config: DemoConfig, components: Any) -> list[str]:
    """The quantizers the demo trains: those named, the default four where installed, or every
    installed one (but ``identity``: the baseline is trained anyway). ``components`` is the run's
    context or the loaded plugins: what has ``registry(kind)``."""
    if config.quantizers is not None:
        return config.quantizers
    installed = [name for name in components.registry("quantizers").names() if name != "identity"]
    defaults = [name for name in DEFAULT_QUANTIZERS if name in installed]
    return defaults or installed


def quantizer_options(config: DemoConfig, name: str) -> dict[str, Any]:
    return config.quantizer_options.get(name, DEFAULT_OPTIONS.get(name, {}))


def metric_names(config: DemoConfig, components: Any) -> list[str]:
    """The metrics the demo computes: those named, or every installed similarity metric."""
    if config.metrics is not None:
        return config.metrics
    return [spec.name for spec in components.registry("metrics").specs() if spec.kind == "similarity"]


def check(config: DemoConfig, plugins: Any) -> None:
    """Before the run directory exists: the components are installed, and take these options."""
    backbones, quantizers, metrics = (plugins.registry(kind) for kind in ("backbones", "quantizers", "metrics"))
    needs = (
        (
            "segmentation backbone",
            "esq-backbones",
            [spec.name for spec in backbones.specs() if spec.task == "segmentation"],
        ),
        ("quantizer", "esq-quantizers", quantizer_names(config, plugins)),
        ("similarity metric", "esq-metrics", metric_names(config, plugins)),
    )
    for kind, distribution, names in needs:
        if not names:
            raise ConfigError(
                f"esq run demo needs at least one {kind}: install {distribution} (or the example plugin, "
                "examples/esq-plugin-example), or load one with --plugin"
            )
    check_segmentation_backbone(backbones, config.backbone, {}, "backbone")
    for name in metric_names(config, plugins):
        metrics.check(name)
    for name in [*quantizer_names(config, plugins), *config.quantizer_options]:
        check_quantizer(quantizers, name, quantizer_options(config, name), f"quantizer_options.{name}")


def _train(config: DemoConfig, context: RunContext, label: str, quantizer: str) -> tuple[Any, Any]:
    """Train one model in ``<run>/<label>/``; its results and the best checkpoint's model."""
    from esq.builtin.checkpoints import load_checkpoint
    from esq.builtin.pipelines.squeeze import BaselineConfig
    from esq.builtin.training.trainer import train

    settings = BaselineConfig(
        seed=config.seed,
        model=config.backbone,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        synthetic_size=config.synthetic_size,
        image_size=config.image_size,
        loggers=["csv"],
    )
    folder = context.path(label)
    folder.mkdir()
    options = quantizer_options(config, quantizer) if quantizer != NO_QUANTIZER else {}
    results = train(
        settings, RunContext(folder, context.log, context.plugins, context.show_progress), quantizer, options
    )
    return results, load_checkpoint(folder / results.summary["best_checkpoint"], context.plugins)


def run(config: DemoConfig, context: RunContext) -> Results:
    from esq.builtin.data.segmentation import open_segmentation
    from esq.builtin.pipelines.similarity.features import checkpoint_features
    from esq.builtin.pipelines.similarity.scoring import plot_metrics

    metrics = {name: context.registry("metrics").create(name) for name in metric_names(config, context)}
    rows, table, confusion_matrices = [], [], {}
    for quantizer in context.progress([NO_QUANTIZER, *quantizer_names(config, context)], "models"):
        label = "baseline" if quantizer == NO_QUANTIZER else quantizer
        trained, model = _train(config, context, label, quantizer)
        (row,) = trained.table
        confusion_matrices[label] = f"{label}/{trained.summary['confusion_matrix']}"
        test_set = open_segmentation(**{k: v for k, v in model.hparams["data"].items() if k != "split"}, split="test")
        x, y = checkpoint_features(
            model,
            test_set,
            context,
            pooling="tokens",
            tokens_per_image=config.tokens_per_image,
            batch_size=config.batch_size,
            seed=config.seed,
        )
        wide = {"model": label, **{name: row.get(name) for name in SCORES}}
        trained_rows = [{**trained_row, "model": label} for trained_row in trained.rows]
        rows += trained_rows
        for name, metric in metrics.items():
            wide[name] = float(metric(x, y).value)
            similarity = {"metric": name, "class": None, "level": None, "value": wide[name], "pooling": "tokens"}
            rows.append({**trained_rows[0], **similarity, "tokens_per_image": config.tokens_per_image})
        context.log.info("%s: mean IoU %.3f, %.1f bits per vector", label, row["mean_iou"], row["bits_per_vector"])
        table.append(wide)
    shown = [row for row in rows if row["metric"] in ("mean_iou", *metrics)]
    title = (
        f"esq run demo: {config.backbone} on synthetic shapes, test split ({len(test_set)} images); "
        f"similarity on tokens pooling, {config.tokens_per_image} per image, N = {len(x)}"
    )
    plot_metrics(context.path("metrics.png"), shown, title)
    summary = {
        "figure_title": title,
        "backbone": config.backbone,
        "epochs": config.epochs,
        "test_rows_for_metrics": len(x),
        "confusion_matrices": confusion_matrices,
    }
    return Results(rows=rows, summary=summary, table=table)
