"""The network ``esq run squeeze`` trains: a frozen segmentation backbone's feature map, squeezed
through a quantizer, read by the backbone's trainable head.

``images → backbone.embed (frozen, no autograd) → [encoder adapter] → quantizer → [decoder
adapter] → backbone.classify → logits``. Without a quantizer (``quantizer = "none"``) it is the
baseline: the head on the original features. The adapters are the previous tool's residual
blocks ``x + Conv1×1(ReLU(BN(Conv3×3(x))))``, kept so its ``.pth`` files load; new runs leave
them off unless asked.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from esq import ConfigError


class ResidualAdapter(nn.Module):
    """``x + Conv1×1(ReLU(BN(Conv3×3(x))))`` on ``(N, C, H, W)`` maps, channels unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _require_segmentation(backbone: nn.Module, name: str) -> None:
    missing = [method for method in ("embed", "classify", "preprocess") if not hasattr(backbone, method)]
    if missing:
        raise ConfigError(
            f"backbone {name!r} has no segmentation head ({', '.join(missing)} missing); "
            "choose a segmentation backbone (esq list backbones: task segmentation)"
        )


class SqueezeModel(nn.Module):
    """``forward(images)`` → ``(logits, quantizer_output or None)``; images preprocessed floats."""

    def __init__(
        self,
        backbone: nn.Module,
        quantizer: nn.Module | None = None,
        *,
        encoder_adapter: bool = False,
        decoder_adapter: bool = False,
        backbone_name: str = "backbone",
    ) -> None:
        super().__init__()
        _require_segmentation(backbone, backbone_name)
        self.backbone = backbone
        self.quantizer = quantizer
        channels = int(backbone.feature_dim)
        self.encoder_adapter = ResidualAdapter(channels) if encoder_adapter else None
        self.decoder_adapter = ResidualAdapter(channels) if decoder_adapter else None

    def squeezed(self, features: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The map the head reads, and the quantizer's output (``None`` without one)."""
        if self.encoder_adapter is not None:
            features = self.encoder_adapter(features)
        output = None
        if self.quantizer is not None:
            output = self.quantizer(features)
            features = output.quantized
        if self.decoder_adapter is not None:
            features = self.decoder_adapter(features)
        return features, output

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, Any]:
        features, output = self.squeezed(self.backbone.embed(images))
        return self.backbone.classify(features, tuple(images.shape[-2:])), output

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [parameter for parameter in self.parameters() if parameter.requires_grad]
