"""``lpips_vgg``: LPIPS-VGG features (Zhang et al. 2018), through the ``lpips`` package
(``pip install 'esq-backbones[lpips]'``).

Taps ``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``, ``relu5_3`` of VGG-16, each
unit-normalised over channels and scaled by the square root of LPIPS's learned channel weights,
so the squared Euclidean distance between two images' maps, averaged over positions and summed
over the five layers, is their LPIPS distance. Images are expected in [-1, 1] (``preprocess``
does that). ``weights="default"`` reads torchvision's VGG-16 file and the linear weights the
``lpips`` package ships; a file path names a VGG-16 state dict in torchvision's layout.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torchvision import models

from esq_backbones.base import FrozenBackbone
from esq_backbones.extras import import_extra
from esq_backbones.images import ImageTransform

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
SLICE_ENDS = (3, 8, 15, 22, 29)  # last torchvision `features` index inside each LPIPS slice


def vgg_to_slices(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision VGG-16 keys (``features.i.weight``) as LPIPS names them (``slice{k}.i.weight``)."""
    converted = {}
    for key, value in state.items():
        part, index, rest = [*key.split(".", 2), "", ""][:3]
        if part == "features" and index.isdigit() and int(index) <= SLICE_ENDS[-1]:
            slice_number = next(k for k, end in enumerate(SLICE_ENDS, 1) if int(index) <= end)
            converted[f"slice{slice_number}.{index}.{rest}"] = value
        elif part != "classifier":
            converted[key] = value
    return converted


class LPIPSVGG(FrozenBackbone):
    """LPIPS-VGG: five weighted, normalised VGG-16 maps; ``relu5_3`` (512-d) by default."""

    name = "lpips_vgg"
    WEIGHTS = models.VGG16_Weights.IMAGENET1K_V1

    def __init__(self, weights: str | Path = "none", layer: str = "relu5_3", batch_size: int = 32) -> None:
        lpips = import_extra("lpips", self.name, "lpips")
        pretrained = str(weights) != "none"
        with warnings.catch_warnings():  # lpips asks torchvision for VGG through a deprecated argument
            warnings.simplefilter("ignore", UserWarning)
            network = lpips.LPIPS(net="vgg", pretrained=pretrained, pnet_rand=True, verbose=False)
        self.load_weights(weights, network.net, convert=vgg_to_slices)
        slices = [getattr(network.net, f"slice{k}") for k in range(1, len(LAYERS) + 1)]
        super().__init__(network, dict(zip(LAYERS, slices, strict=True)), layer, weights=weights, batch_size=batch_size)
        self._lins = dict(zip(LAYERS, network.lins, strict=True))
        self._normalize = lpips.normalize_tensor
        self.preprocess = ImageTransform(self.name, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def _run(self, images: torch.Tensor) -> object:
        return self.network.net(self.network.scaling_layer(images))

    def _tap_output(self, name: str, output: torch.Tensor) -> torch.Tensor:
        scale = self._lins[name].model[-1].weight.clamp_min(0).sqrt().view(1, -1, 1, 1)
        return self._normalize(output) * scale
