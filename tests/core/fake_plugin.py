"""A plugin for core's tests: small, exact components of every kind and a pipeline.

Load it with ``--plugin tests/core/fake_plugin.py``. The components are deliberately simple
and correct, so each ``esq.testing`` check passes on them; the tests break them on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esq import (
    BackboneSpec,
    DataError,
    DegradationSpec,
    MetricResult,
    MetricSpec,
    PipelineConfig,
    PipelineSpec,
    QuantizerSpec,
    Results,
    RetrieverSpec,
    hookimpl,
)
from esq.validation import paired_features, two_samples


class MeanDistance:
    """Similarity: minus the mean distance between paired rows (0 when identical)."""

    options: dict[str, Any] = {}

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = paired_features(x, y)
        if x.shape[1] != y.shape[1]:
            raise DataError("mean_distance needs equal dimensions")
        return MetricResult(-float(np.linalg.norm(x - y, axis=1).mean()))


class MeanShift:
    """Distribution: the distance between the two samples' means."""

    options: dict[str, Any] = {}

    def __call__(self, reference: Any, other: Any) -> MetricResult:
        reference, other = two_samples(reference, other)
        return MetricResult(float(np.linalg.norm(reference.mean(0) - other.mean(0))))


def rounding_quantizer(input_dim: int, bottleneck_dim: int = 4, levels: int = 5) -> Any:
    import torch
    from torch import nn

    from esq import ConfigError, QuantizerOutput

    class Rounding(nn.Module):
        """Project to ``bottleneck_dim``, round tanh to ``levels`` steps, project back."""

        def __init__(self) -> None:
            super().__init__()
            if levels < 2:
                raise ConfigError(f"levels must be at least 2, got {levels}")
            self.options = {"input_dim": input_dim, "bottleneck_dim": bottleneck_dim, "levels": levels}
            self.down, self.up = nn.Linear(input_dim, bottleneck_dim), nn.Linear(bottleneck_dim, input_dim)
            self.bits_per_vector = bottleneck_dim * float(np.log2(levels))

        def compression_ratio(self, feature_dim: int) -> float:
            return feature_dim * 32 / self.bits_per_vector

        def _last(self, x: torch.Tensor) -> torch.Tensor:
            if x.ndim not in (3, 4) or x.shape[-1 if x.ndim == 3 else 1] != input_dim:
                raise DataError(f"expected feature dimension {input_dim}, got shape {tuple(x.shape)}")
            return x if x.ndim == 3 else x.movedim(1, -1)

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            z = torch.tanh(self.down(self._last(x)))
            return torch.round((z + 1) / 2 * (levels - 1)).long()

        def decode(self, codes: torch.Tensor) -> torch.Tensor:
            out = self.up(codes.float() / (levels - 1) * 2 - 1)
            return out if codes.ndim == 3 else out.movedim(-1, 1)

        def forward(self, x: torch.Tensor) -> QuantizerOutput:
            z = torch.tanh(self.down(self._last(x)))
            step = torch.round((z + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1
            out = self.up(z + (step - z).detach())
            out = out if x.ndim == 3 else out.movedim(-1, 1)
            return QuantizerOutput(out, self.encode(x), ((step - z) ** 2).mean(), {"usage": 1.0})

    return Rounding()


def tiny_backbone(weights: str = "none", channels: int = 4) -> Any:
    import torch
    from torch import nn

    from esq import ConfigError

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if weights != "none":
                raise ConfigError("tiny backbone has no pretrained weights; use weights='none'")
            self.options = {"weights": weights, "channels": channels}
            self.feature_dim = channels
            self.net = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU())
            self.requires_grad_(False)
            self.eval()

        def train(self, mode: bool = True) -> Tiny:
            return super().train(False)

        def preprocess(self, images: torch.Tensor) -> torch.Tensor:
            return images

        def layers(self) -> list[str]:
            return ["conv", "relu"]

        def features(self, images: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
            unknown = [layer for layer in layers if layer not in self.layers()]
            if unknown:
                raise ConfigError(f"unknown layer {unknown[0]!r}; layers: conv, relu")
            with torch.inference_mode():
                conv = self.net[0](images)
                relu = self.net[2](self.net[1](conv))
            return {layer: {"conv": conv, "relu": relu}[layer] for layer in layers}

    return Tiny()


def tiny_segmenter(num_classes: int = 4, weights: str = "none", channels: int = 8) -> Any:
    """A frozen conv trunk and a trainable 1×1 head: what the training pipelines need."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from esq import ConfigError

    class TinySegmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if weights != "none":
                raise ConfigError("tiny_segmenter has no pretrained weights; use weights='none'")
            self.options = {"weights": weights, "num_classes": num_classes, "channels": channels}
            self.feature_dim, self.num_classes = channels, num_classes
            self.network = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU())
            self.network.requires_grad_(False)
            self.head = nn.Conv2d(channels, num_classes, 1)

        def preprocess(self, images: torch.Tensor) -> torch.Tensor:
            return images.float() / 255 if images.dtype == torch.uint8 else images

        def embed(self, images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self.network(images)

        def classify(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
            return F.interpolate(self.head(features), size=size, mode="bilinear", align_corners=False)

    return TinySegmenter()


class Noise:
    """Adds seeded Gaussian noise of std ``level`` (0-255 scale)."""

    def __init__(self, levels: tuple[float, ...] = (4.0, 16.0, 64.0)) -> None:
        self.levels = tuple(levels)
        self.options = {"levels": list(self.levels)}

    def apply(self, images: Any, level: float, seed: int) -> Any:
        import torch

        scale = 255.0 if images.dtype == torch.uint8 else 1.0
        generator = torch.Generator().manual_seed(seed)
        noisy = images.float() + torch.randn(images.shape, generator=generator) * level * scale / 255
        return noisy.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else noisy


class ExactInnerProduct:
    """Brute-force top-k by inner product."""

    options: dict[str, Any] = {}

    def __init__(self) -> None:
        self.keys: np.ndarray | None = None

    def index(self, keys: Any) -> ExactInnerProduct:
        self.keys = np.asarray(keys, dtype=np.float64)
        return self

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.keys is None:
            raise DataError("search before index: call index(keys) first")
        if not 1 <= k <= len(self.keys):
            raise DataError(f"k={k} must be between 1 and the number of keys ({len(self.keys)})")
        scores = np.asarray(queries, dtype=np.float64) @ self.keys.T
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, axis=1), ids


@dataclass
class EchoConfig(PipelineConfig):
    """Options of the ``echo`` pipeline."""

    rows: int = 2
    label: str = "x"
    mode: str = "plain"
    tags: list[str] = field(default_factory=list, metadata={"option": "tag"})
    loud: bool = field(default=True, metadata={"negative": "quiet"})


def check_echo(config: EchoConfig, plugins: Any) -> None:
    from esq import ConfigError

    if config.rows < 0:
        raise ConfigError(f"echo: rows must be at least 0, got {config.rows}")


def echo(config: EchoConfig, context: Any) -> Results:
    context.path("note.txt").write_text(config.label)
    return Results(rows=[{"row": i, "label": config.label} for i in range(config.rows)], summary={"seed": config.seed})


@hookimpl
def esq_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="mean_distance",
            factory=MeanDistance,
            summary="Minus the mean paired distance",
            kind="similarity",
            higher_is_better=True,
            range=(float("-inf"), 0.0),
        ),
        MetricSpec(
            name="mean_shift",
            factory=MeanShift,
            summary="Distance between means",
            kind="distribution",
            higher_is_better=False,
            range=(0.0, float("inf")),
        ),
    ]


@hookimpl
def esq_quantizers() -> list[QuantizerSpec]:
    return [QuantizerSpec(name="rounding", factory=rounding_quantizer, summary="Rounded tanh bottleneck")]


@hookimpl
def esq_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(name="tiny", factory=tiny_backbone, summary="One conv layer"),
        BackboneSpec(
            name="tiny_segmenter",
            factory=tiny_segmenter,
            summary="Frozen conv, trainable 1×1 head",
            task="segmentation",
        ),
    ]


@hookimpl
def esq_degradations() -> list[DegradationSpec]:
    return [DegradationSpec(name="noise", factory=Noise, summary="Gaussian noise")]


@hookimpl
def esq_retrievers() -> list[RetrieverSpec]:
    return [RetrieverSpec(name="exact_ip", factory=ExactInnerProduct, summary="Brute-force inner product")]


@hookimpl
def esq_pipelines() -> list[PipelineSpec]:
    return [PipelineSpec(name="echo", config=EchoConfig, run=echo, check=check_echo, summary="Echo rows")]
