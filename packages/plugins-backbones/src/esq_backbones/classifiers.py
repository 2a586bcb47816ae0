"""ImageNet classifiers as feature extractors: ``resnet50`` and ``vgg19`` (torchvision).

ResNet taps: the stem (``conv1``, ``bn1``, ``relu``, ``maxpool``), every bottleneck
(``layer1.0`` … ``layer4.2``) and ``avgpool``; ``layer1`` … ``layer4`` are accepted as aliases of
each stage's output. VGG taps: ``features.0`` … ``features.36`` (each conv, ReLU and pool, so
index ``i`` is ``features.i``) and ``avgpool``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from torchvision import models

from esq_backbones.base import FrozenBackbone
from esq_backbones.images import ImageTransform


def resnet_taps(network: nn.Module) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """Stem and bottleneck taps of a torchvision ResNet body, and the stage aliases."""
    taps = {name: getattr(network, name) for name in ("conv1", "bn1", "relu", "maxpool")}
    stages = {f"layer{i}": getattr(network, f"layer{i}") for i in range(1, 5)}
    for stage_name, stage in stages.items():
        taps.update({f"{stage_name}.{index}": block for index, block in enumerate(stage)})
    return taps, stages


def classification_transform(name: str, weights_enum: Any) -> ImageTransform:
    """The resize, crop and normalisation the torchvision weights were trained with."""
    preset = weights_enum.transforms()
    return ImageTransform(
        name, preset.mean, preset.std, preset.resize_size[0], preset.crop_size[0], preset.interpolation
    )


class ResNet50(FrozenBackbone):
    """torchvision ResNet-50; taps by name or index, the 2048-d ``layer4`` by default."""

    name = "resnet50"
    WEIGHTS = models.ResNet50_Weights.DEFAULT
    probe_size = 64

    def __init__(
        self, weights: str | Path = "none", layer: str = "layer4", batch_size: int = 32, channels_last: bool = True
    ) -> None:
        network = models.resnet50(weights=None)
        self.load_weights(weights, network)
        taps, stages = resnet_taps(network)
        taps["avgpool"] = network.avgpool
        super().__init__(
            network, taps, layer, weights=weights, aliases=stages, batch_size=batch_size, channels_last=channels_last
        )
        self.preprocess = classification_transform(self.name, self.WEIGHTS)


class VGG19(FrozenBackbone):
    """torchvision VGG-19; taps ``features.i`` by name or index, the 512-d ``features.36`` by default."""

    name = "vgg19"
    WEIGHTS = models.VGG19_Weights.DEFAULT

    def __init__(
        self, weights: str | Path = "none", layer: str = "features.36", batch_size: int = 32, channels_last: bool = True
    ) -> None:
        network = models.vgg19(weights=None)
        self.load_weights(weights, network)
        taps = {f"features.{index}": module for index, module in enumerate(network.features)}
        taps["avgpool"] = network.avgpool
        super().__init__(network, taps, layer, weights=weights, batch_size=batch_size, channels_last=channels_last)
        self.preprocess = classification_transform(self.name, self.WEIGHTS)
