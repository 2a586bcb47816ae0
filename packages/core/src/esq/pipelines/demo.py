"""``esq run demo``: every installed quantizer on synthetic embeddings, scored by every
installed similarity metric, offline and in seconds.

The embeddings are a seeded Gaussian mixture (``clusters`` centres in ``feature_dim``
dimensions). Each quantizer is fitted for ``steps`` Adam steps on its own loss plus the
reconstruction error, then the original and the quantized embeddings are compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from esq.config import PipelineConfig
from esq.errors import ConfigError
from esq.registry import check_options
from esq.results import Results, RunContext


@dataclass
class DemoConfig(PipelineConfig):
    """Options of ``esq run demo``."""

    samples: int = field(default=512, metadata={"help": "embeddings to generate"})
    feature_dim: int = field(default=64, metadata={"help": "their dimension (the quantizers' input_dim)"})
    clusters: int = field(default=8, metadata={"help": "Gaussian mixture components"})
    steps: int = field(default=100, metadata={"help": "Adam steps fitting each quantizer"})
    learning_rate: float = 1e-3
    quantizers: list[str] | None = field(default=None, metadata={"help": "names; None: every installed one"})
    metrics: list[str] | None = field(default=None, metadata={"help": "names; None: every similarity metric"})
    quantizer_options: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata={"help": "per quantizer, e.g. --set quantizer_options.vq.codebook_size=256"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for option, least in (("samples", 2), ("feature_dim", 1), ("clusters", 1), ("steps", 0)):
            if getattr(self, option) < least:
                raise ValueError(f"{option} must be at least {least}, got {getattr(self, option)}")
        _check_components(self)


def quantizer_names(config: DemoConfig) -> list[str]:
    """The quantizers the demo runs: those named, or every installed one."""
    from esq import registry

    return config.quantizers if config.quantizers is not None else registry("quantizers").names()


def metric_names(config: DemoConfig) -> list[str]:
    """The metrics the demo computes: those named, or every installed similarity metric."""
    from esq import registry

    if config.metrics is not None:
        return config.metrics
    return [spec.name for spec in registry("metrics").specs() if spec.kind == "similarity"]


def _check_components(config: DemoConfig) -> None:
    """Component names and options are checked while the config is built, before a run starts."""
    from esq import registry

    quantizers, metrics = registry("quantizers"), registry("metrics")
    needs = (
        ("quantizer", "esq-quantizers", quantizer_names(config)),
        ("similarity metric", "esq-metrics", metric_names(config)),
    )
    for kind, distribution, names in needs:
        if not names:
            raise ConfigError(
                f"esq run demo needs at least one {kind}: install {distribution} (or the example plugin, "
                "examples/esq-plugin-example), or load one with --plugin"
            )
    for name in metric_names(config):
        metrics.spec(name)
    for name in [*quantizer_names(config), *config.quantizer_options]:
        options = {"input_dim": config.feature_dim, **config.quantizer_options.get(name, {})}
        check_options(f"quantizer_options.{name}: quantizer {name!r}", quantizers.spec(name).builder(), options)


def synthetic_embeddings(samples: int, feature_dim: int, clusters: int, seed: int) -> Any:
    """A seeded Gaussian mixture, ``samples × feature_dim``, float32 (a NumPy array)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, feature_dim))
    labels = rng.integers(clusters, size=samples)
    return (centres[labels] + 0.3 * rng.normal(size=(samples, feature_dim))).astype(np.float32)


def fit_quantizer(quantizer: Any, features: Any, steps: int, learning_rate: float) -> None:
    """``steps`` Adam steps on the quantizer's own loss plus the reconstruction error of
    ``features``; the quantizer is left in eval mode."""
    import torch

    parameters = [p for p in quantizer.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(parameters, lr=learning_rate) if parameters else None
    quantizer.train()
    for _ in range(steps):
        output = quantizer(features)
        loss = output.loss + torch.nn.functional.mse_loss(output.quantized, features)
        if optimiser is not None and loss.requires_grad:
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    quantizer.eval()


def run(config: DemoConfig, context: RunContext) -> Results:
    import numpy as np
    import torch

    from esq import registry

    quantizers, metrics = registry("quantizers"), registry("metrics")
    features = synthetic_embeddings(config.samples, config.feature_dim, config.clusters, config.seed)
    tokens = torch.from_numpy(features).unsqueeze(0)
    scorers = {name: metrics.create(name) for name in metric_names(config)}
    rows = []
    for name in context.progress(quantizer_names(config), "quantizers"):
        options = {"input_dim": config.feature_dim, **config.quantizer_options.get(name, {})}
        quantizer = quantizers.create(name, **options)
        fit_quantizer(quantizer, tokens, config.steps, config.learning_rate)
        with torch.no_grad():
            squeezed = quantizer(tokens).quantized.squeeze(0).double().numpy()
        context.log.info("quantizer %s: %s bits per vector", name, quantizer.bits_per_vector)
        for metric_name, scorer in scorers.items():
            rows.append(
                {
                    "quantizer": name,
                    "metric": metric_name,
                    "value": scorer(features.astype(np.float64), squeezed).value,
                    "higher_is_better": metrics.spec(metric_name).higher_is_better,
                    "bits_per_vector": float(quantizer.bits_per_vector),
                    "compression_ratio": float(quantizer.compression_ratio(config.feature_dim)),
                }
            )
    return Results(rows=rows, summary={"samples": config.samples, "feature_dim": config.feature_dim})
