"""``esq run degradation``: which distribution metric, on which features, rises monotonically as
images get worse.

For each backbone × layer configuration × feature transform × metric (× distribution model for
the metrics that fit one), the metric compares ``n_reference`` clean images with ``n_evaluation``
other images, clean and at every level of every degradation. A configuration's monotonicity for
one degradation is Spearman's ρ between level and score; its rank is the mean over degradations.
Activations come from the activation cache (:mod:`esq.builtin.cache`) when it has them, so a second run
with other metrics, transforms or distribution models does not run the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from esq import (
    ConfigError,
    EsqError,
    PipelineConfig,
    Results,
    RunContext,
    check_device,
    check_options,
    did_you_mean,
)

MODES: dict[str, dict[str, Any]] = {
    "quick": {"n_reference": 50, "n_evaluation": 25, "transforms": ["raw"], "metrics": ["fid", "kid", "cmmd"]},
    "medium": {
        "n_reference": 200,
        "n_evaluation": 50,
        "transforms": ["raw", "gram_pca"],
        "metrics": ["fid", "kid", "cmmd", "gmm_mahalanobis", "gmm_nll", "kde_nll"],
    },
    "full": {
        "n_reference": 1000,
        "n_evaluation": 50,
        "transforms": ["raw", "gram", "gram_pca"],
        "metrics": ["fid", "kid", "cmmd", "gmm_mahalanobis", "gmm_nll", "kde_nll"],
    },
}


def _default_models() -> dict[str, dict[str, Any]]:
    return {
        "gmm_diag": {"covariance_type": "diag", "n_components": 5},
        "gmm_full": {"covariance_type": "full", "n_components": 5},
        "kde": {"bandwidth": "scott"},
    }


def _default_degradations() -> dict[str, dict[str, Any]]:
    return {
        "blur": {"type": "gaussian_blur"},
        "blur_contrast": {"type": "blur_contrast"},
        "noise": {"type": "gaussian_noise"},
        "aliasing": {"type": "aliasing"},
    }


@dataclass
class DegradationConfig(PipelineConfig):
    """Options of ``esq run degradation``. Options left unset take the ``mode``'s values."""

    mode: Literal["quick", "medium", "full"] = field(
        default="medium", metadata={"help": "sizes and grid: quick (50 images), medium (200), full (1000)"}
    )
    backbones: list[str] = field(default_factory=lambda: ["resnet50"])
    backbone_options: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata={"help": "per backbone, e.g. backbone_options.resnet50.weights=default"}
    )
    layer_configs: dict[str, list[str | int]] | None = field(
        default=None,
        metadata={"help": "name -> layers (names or indices, pooled together); unset: by mode"},
    )
    transforms: list[str] | None = field(default=None, metadata={"help": "raw, gram, gram_pca, gram_pca_<dim>..."})
    pca_dim: int = 10
    metrics: list[str] | None = field(default=None, metadata={"help": "distribution metrics; unset: by mode"})
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    distribution_models: dict[str, dict[str, Any]] = field(
        default_factory=_default_models,
        metadata={"help": "name -> options; a metric runs once per model whose options it takes"},
    )
    degradations: dict[str, dict[str, Any]] = field(
        default_factory=_default_degradations,
        metadata={"help": "name -> {type = DEGRADATION, levels = [...], options}"},
    )
    images: str = field(default="builtin", metadata={"help": "builtin, synthetic, or an image folder"})
    image_size: int = 224
    n_reference: int | None = None
    n_evaluation: int | None = None
    on_unreadable: Literal["stop", "skip"] = "stop"
    cache: bool = field(default=True, metadata={"help": "read and write the activation cache"})
    cache_dir: str | None = field(default=None, metadata={"help": "unset: $ESQ_CACHE_DIR or ~/.cache/esq"})
    cache_dtype: Literal["float32", "float16"] = "float32"
    device: str = "cpu"
    batch_size: int = 32
    top_k: int = field(default=5, metadata={"help": "plots monotonicity_top1.png … top{k}.png"})
    ranking_rows: int = field(
        default=20, metadata={"help": "configurations the printed ranking shows (results.csv has all)"}
    )
    max_feature_dim: int = field(default=8192, metadata={"help": "wider metric inputs are skipped"})
    max_gram_dim: int = field(default=131_328, metadata={"help": "wider Gram vectors (> 512 channels) are skipped"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for option, least in (
            ("image_size", 8),
            ("pca_dim", 1),
            ("batch_size", 1),
            ("top_k", 0),
            ("ranking_rows", 1),
            ("max_feature_dim", 1),
            ("max_gram_dim", 1),
        ):
            if getattr(self, option) < least:
                raise ValueError(f"{option} must be at least {least}, got {getattr(self, option)}")
        if self.mode_value("n_reference") < 2 or self.mode_value("n_evaluation") < 2:
            raise ValueError("n_reference and n_evaluation must be at least 2")
        if not self.backbones:
            raise ValueError("backbones is empty; name at least one (esq list backbones)")
        if self.images not in ("builtin", "synthetic") and not Path(self.images).is_dir():
            raise ValueError(
                f"images: {self.images!r} is not a folder; give an image folder, 'builtin' (photographs that "
                "ship with scikit-image and scikit-learn) or 'synthetic'"
            )
        if self.layer_configs is not None and not all(self.layer_configs.values()):
            raise ValueError("every layer config needs at least one layer")

    def mode_value(self, option: str) -> Any:
        value = getattr(self, option)
        return MODES[self.mode][option] if value is None else value


@dataclass(frozen=True)
class MetricEntry:
    """One metric with one set of options: ``distribution`` names the model ("-" for none)."""

    metric: str
    distribution: str
    options: dict[str, Any]


def metric_entries(config: DegradationConfig, components: Any) -> list[MetricEntry]:
    """Each metric, once per distribution model whose every option it takes (once, with its own
    options, when it takes no model); ``components`` (the run's context or the loaded plugins)
    has ``registry(kind)``."""
    import inspect

    metrics = components.registry("metrics")
    entries = []
    for name in config.mode_value("metrics"):
        spec = metrics.spec(name)
        if spec.kind != "distribution":
            raise ConfigError(
                f"metrics: {name!r} is a {spec.kind} metric; esq run degradation needs distribution metrics"
            )
        accepted = set(inspect.signature(spec.builder()).parameters)
        base = dict(config.metric_options.get(name, {}))
        if "seed" in accepted:
            base.setdefault("seed", config.seed)
        models = {model: options for model, options in config.distribution_models.items() if set(options) <= accepted}
        models = {model: options for model, options in models.items() if options}
        for model, options in models.items() or [("-", {})]:
            entries.append(MetricEntry(name, model, {**base, **options}))
    return entries


def check_distribution_models(config: DegradationConfig, components: Any) -> None:
    """Each distribution model's options are all taken by one installed distribution metric
    (a model no metric of this run takes is fine: the mode's metrics may fit none); a misspelt
    option is a ``ConfigError``, not a model silently never used."""
    import inspect

    metrics = components.registry("metrics")
    accepted = {
        spec.name: set(inspect.signature(spec.builder()).parameters) - {"seed"}
        for spec in metrics.specs()
        if spec.kind == "distribution"
    }
    known = sorted(set().union(*accepted.values()))
    for model, options in config.distribution_models.items():
        where = f"distribution_models.{model}"
        if not isinstance(options, dict) or not options:
            raise ConfigError(f"{where}: give its options as a table, e.g. {{n_components = 5}}, or remove it")
        for option in options:
            if option not in known:
                raise ConfigError(
                    f"{where}: no installed distribution metric takes option {option!r}"
                    f"{did_you_mean(option, known)}; their options: {', '.join(known)}"
                )
        if not any(set(options) <= taken for taken in accepted.values()):
            raise ConfigError(
                f"{where}: no distribution metric takes all of {', '.join(sorted(options))} together; "
                "split them into one model per metric"
            )


def check_layer_names(backbones: Any, name: str, options: dict[str, Any], layer_configs: dict[str, list]) -> None:
    """Each layer ``layer_configs`` names is one backbone ``name`` has: asked of the backbone built
    on torch's meta device without weights (nothing is read); one that cannot be built there is
    checked when the run builds it."""
    import torch

    from esq.builtin.pipelines.degradation.extraction import resolve_layers

    try:
        with torch.device("meta"):
            backbone = backbones.create(name, **{**options, **({"weights": "none"} if "weights" in options else {})})
    except Exception:
        return
    for group, layers in layer_configs.items():
        try:
            resolve_layers(backbone, list(layers))
        except EsqError as error:
            raise ConfigError(f"layer_configs.{group}: {error}") from None


def check(config: DegradationConfig, plugins: Any) -> None:
    """Before the run directory exists: every component is installed and takes its options. The
    backbones' options are checked against their signatures only: a run the activation cache
    answers never builds a backbone, nor reads its weights."""
    from esq.builtin.pipelines.degradation.extraction import declares_default_layer, no_default_layer
    from esq.builtin.pipelines.degradation.feature_transforms import parse_transform

    check_device("degradation", "device", config.device)
    if config.cache:
        from esq.builtin.cache import check_root, default_root

        check_root(config.cache_dir if config.cache_dir is not None else default_root())
    backbones = plugins.registry("backbones")
    for name in config.backbone_options:
        if name not in config.backbones:
            raise ConfigError(f"backbone_options.{name}: {name!r} is not in backbones {config.backbones}")
    for name in config.backbones:
        options = config.backbone_options.get(name, {})
        check_options(f"backbone_options.{name}: backbone {name!r}", backbones.spec(name).builder(), options)
        if config.layer_configs is None and not declares_default_layer(backbones.spec(name).builder()):
            raise ConfigError(no_default_layer(name, config.mode))
        if config.layer_configs is not None:
            check_layer_names(backbones, name, options, config.layer_configs)
    for name in config.mode_value("transforms"):
        parse_transform(name, config.pca_dim)
    for name in config.metric_options:
        if name not in config.mode_value("metrics"):
            raise ConfigError(f"metric_options.{name}: {name!r} is not in metrics {config.mode_value('metrics')}")
    check_distribution_models(config, plugins)
    for entry in metric_entries(config, plugins):
        try:
            plugins.registry("metrics").check(entry.metric, **entry.options)
        except ConfigError as error:
            raise ConfigError(f"metric {entry.metric!r} (distribution model {entry.distribution!r}): {error}") from None
    if not config.degradations:
        raise ConfigError("degradations is empty; name at least one, e.g. --set degradations.blur.type=gaussian_blur")
    for name, options in config.degradations.items():
        if "type" not in options:
            raise ConfigError(
                f"degradations.{name}: missing 'type' (one of {', '.join(plugins.registry('degradations').names())})"
            )
    build_degradations(config, plugins)  # levels out of range, unsorted or unknown presets fail here


def build_degradations(config: DegradationConfig, components: Any) -> dict[str, Any]:
    """Each configured degradation, built with its options (``levels`` among them)."""
    degradations = components.registry("degradations")
    built = {}
    for name, options in config.degradations.items():
        spec = degradations.spec(options["type"])
        rest = {key: value for key, value in options.items() if key != "type"}
        check_options(f"degradations.{name}: degradation {spec.name!r}", spec.builder(), rest)
        try:
            built[name] = degradations.create(spec.name, **rest)
        except ConfigError as error:
            raise ConfigError(f"degradations.{name}: {error}") from None
    return built


def run(config: DegradationConfig, context: RunContext) -> Results:
    from esq.builtin.pipelines.degradation.extraction import extract_backbone
    from esq.builtin.pipelines.degradation.scoring import score_backbone, summarise

    degradations = build_degradations(config, context)
    entries = metric_entries(config, context)
    configurations: list[dict[str, Any]] = []
    for backbone_name in config.backbones:
        layer_groups, activations = extract_backbone(config, backbone_name, degradations, context)
        configurations += score_backbone(
            config, backbone_name, layer_groups, activations, entries, degradations, context
        )
    return summarise(config, configurations, context)
