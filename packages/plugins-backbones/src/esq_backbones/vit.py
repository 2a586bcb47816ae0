"""Vision-transformer segmentation backbones over torchvision's ``VisionTransformer``:
``vit_b_16``, ``vit_b_32`` and the small ``tiny_vit`` (random init only, for tests and the demo).

The encoder is frozen; the head (Conv3×3 → BN → ReLU → Conv1×1, ``head_channels`` wide) reads the
patch-token grid and its logits are upsampled bilinearly. Any image whose sides are multiples of
the patch size works: the position embeddings are interpolated (bicubic) from the trained grid.
Taps: ``conv_proj`` (a map), ``encoder.layers.encoder_layer_i`` and ``encoder.ln`` (patch tokens
``(N, T, D)``, the class token dropped).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models
from torchvision.models.vision_transformer import VisionTransformer

from esq_backbones.images import ImageTransform, check_size_multiple
from esq_backbones.segmentation import SegmentationBackbone, conv_head


class ViTSegmentation(SegmentationBackbone):
    """A torchvision ViT encoder with a convolutional segmentation head."""

    def __init__(
        self,
        network: VisionTransformer,
        weights: str | Path,
        num_classes: int,
        head_channels: int,
        train_last_block: bool,
        batch_size: int,
    ) -> None:
        self.load_weights(weights, network, ignore=("heads.",))
        network.heads = nn.Identity()
        encoder_layers = network.encoder.layers
        taps = {"conv_proj": network.conv_proj}
        taps.update({f"encoder.layers.{name}": layer for name, layer in encoder_layers.named_children()})
        taps["encoder.ln"] = network.encoder.ln
        super().__init__(
            network,
            taps,
            "encoder.ln",
            weights=weights,
            head=conv_head(self.name, network.hidden_dim, head_channels, num_classes),
            last_block=encoder_layers[-1],
            num_classes=num_classes,
            train_last_block=train_last_block,
            batch_size=batch_size,
        )
        self.patch_size = network.patch_size
        self.head_channels = head_channels
        self.preprocess = ImageTransform(self.name)

    def _check_size(self, height: int, width: int) -> None:
        check_size_multiple(self.name, self.patch_size, "the patch size", height, width)

    def _position_embedding(self, rows: int, columns: int) -> torch.Tensor:
        embedding = self.network.encoder.pos_embedding
        trained = math.isqrt(embedding.shape[1] - 1)
        if (rows, columns) == (trained, trained):
            return embedding
        grid = embedding[:, 1:].reshape(1, trained, trained, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(rows, columns), mode="bicubic", align_corners=False)
        return torch.cat([embedding[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        network = self.network
        patches = network.conv_proj(images)
        self._grid = patches.shape[-2:]
        tokens = patches.flatten(2).transpose(1, 2)
        tokens = torch.cat([network.class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = network.encoder.dropout(tokens + self._position_embedding(*self._grid))
        for layer in network.encoder.layers[:-1]:
            tokens = layer(tokens)
        return tokens

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.encoder.ln(super()._run(images))

    def to_map(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.network.encoder.ln(x)[:, 1:]
        rows, columns = self._grid
        return patches.transpose(1, 2).reshape(x.shape[0], -1, rows, columns)

    def _tap_output(self, name: str, output: torch.Tensor) -> torch.Tensor:
        return output if name == "conv_proj" else output[:, 1:]


class ViTBase(ViTSegmentation):
    """A torchvision ViT-B (``architecture``), 768-d patch tokens."""

    architecture = staticmethod(models.vit_b_16)

    def __init__(
        self,
        weights: str | Path = "none",
        num_classes: int = 21,
        head_channels: int = 256,
        train_last_block: bool = False,
        batch_size: int = 32,
    ) -> None:
        network = self.architecture(weights=None)
        super().__init__(network, weights, num_classes, head_channels, train_last_block, batch_size)


class ViTB16(ViTBase):
    """ViT-B/16 (torchvision), 768-d patch tokens on a 16-px grid."""

    name = "vit_b_16"
    WEIGHTS = models.ViT_B_16_Weights.DEFAULT
    architecture = staticmethod(models.vit_b_16)


class ViTB32(ViTBase):
    """ViT-B/32 (torchvision), 768-d patch tokens on a 32-px grid."""

    name = "vit_b_32"
    WEIGHTS = models.ViT_B_32_Weights.DEFAULT
    architecture = staticmethod(models.vit_b_32)


class TinyViT(ViTSegmentation):
    """A 2-layer, 32-d ViT with 4-px patches: milliseconds on a CPU, for tests and the demo."""

    name = "tiny_vit"

    def __init__(
        self,
        weights: str | Path = "none",
        num_classes: int = 3,
        head_channels: int = 16,
        train_last_block: bool = False,
        batch_size: int = 64,
    ) -> None:
        network = VisionTransformer(
            image_size=32, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=1
        )
        super().__init__(network, weights, num_classes, head_channels, train_last_block, batch_size)
