"""Segmentation backbones: a frozen trunk, its last block (frozen unless ``train_last_block``),
and a trainable head whose logits are upsampled bilinearly to the input size.

``embed(images)`` gives the map the head reads (the features a quantizer squeezes), ``classify``
turns such a map into logits, and ``forward(images) = classify(embed(images), size)``. The frozen
part runs without autograd; ``embed``'s output is an ordinary tensor a quantizer can train on.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from esq import check_bool, check_int
from esq_backbones.base import FrozenBackbone


class SegmentationBackbone(FrozenBackbone):
    """Subclasses pass ``head`` and ``last_block`` (a module inside ``network``) and define
    ``trunk(images)`` (everything before the last block) and ``to_map(x)`` (the last block's
    output as an ``(N, C, h, w)`` map)."""

    def __init__(
        self,
        network: nn.Module,
        taps: dict[str, nn.Module],
        default_layer: str,
        *,
        head: nn.Module,
        last_block: nn.Module,
        num_classes: int,
        train_last_block: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(network, taps, default_layer, **options)
        self.num_classes = check_int(self.name, "num_classes", num_classes, minimum=1)
        self.head = head
        object.__setattr__(self, "last_block", last_block)  # a part of `network`, not a second copy
        self.train_last_block = check_bool(self.name, "train_last_block", train_last_block)
        if self.train_last_block:
            last_block.requires_grad_(True)
        self.train(self.training)

    def trainable_blocks(self) -> list[nn.Module]:
        return [self.last_block] if self.train_last_block else []

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to_map(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _run(self, images: torch.Tensor) -> Any:
        return self.last_block(self.trunk(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The ``(N, feature_dim, h, w)`` map the head reads."""
        parameter = next(self.network.parameters())
        images = self._checked(images).to(parameter.device, parameter.dtype)
        with torch.no_grad():
            x = self.trunk(images)
            if not self.train_last_block:
                x = self.last_block(x)
        if self.train_last_block:
            x = self.last_block(x)
        return self.to_map(x)

    def classify(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Head logits for an ``embed``-shaped map, upsampled to ``size``."""
        return F.interpolate(self.head(features), size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, num_classes, H, W)`` logits."""
        return self.classify(self.embed(images), images.shape[-2:])


def conv_head(owner: str, in_channels: int, hidden: int, num_classes: int) -> nn.Sequential:
    """Conv3×3 → BatchNorm → ReLU → Conv1×1, the head the ViT and tiny backbones train."""
    hidden = check_int(owner, "head_channels", hidden, minimum=1)
    num_classes = check_int(owner, "num_classes", num_classes, minimum=1)
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, num_classes, kernel_size=1),
    )
