"""``tiny_cnn``: a four-block CNN (stride 4, 32-d features) with a segmentation head, random init
only. It runs in milliseconds on a CPU, for tests and the demo."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from esq_backbones.images import ImageTransform
from esq_backbones.segmentation import SegmentationBackbone, conv_head

WIDTHS = (8, 16, 32, 32)
STRIDES = (1, 2, 2, 1)


def conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Conv3×3 → BN → ReLU. He initialisation: with BN's fresh statistics (an identity in eval
    mode) a random frozen network then keeps its activations near unit scale, instead of shrinking
    them block by block, so a head trained on its features learns in a few epochs."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class TinyCNN(SegmentationBackbone):
    """Blocks ``block1`` … ``block4`` (8, 16, 32, 32 channels; stride 4 at the end)."""

    name = "tiny_cnn"

    def __init__(
        self,
        weights: str | Path = "none",
        num_classes: int = 3,
        head_channels: int = 16,
        train_last_block: bool = False,
        batch_size: int = 64,
    ) -> None:
        widths = (3, *WIDTHS)
        network = nn.Sequential(
            OrderedDict(
                (f"block{index + 1}", conv_block(widths[index], widths[index + 1], STRIDES[index]))
                for index in range(len(WIDTHS))
            )
        )
        self.load_weights(weights, network)
        super().__init__(
            network,
            dict(network.named_children()),
            "block4",
            weights=weights,
            head=conv_head(self.name, WIDTHS[-1], head_channels, num_classes),
            last_block=network[-1],
            num_classes=num_classes,
            train_last_block=train_last_block,
            batch_size=batch_size,
        )
        self.head_channels = head_channels
        self.preprocess = ImageTransform(self.name)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        return self.network[:-1](images)
