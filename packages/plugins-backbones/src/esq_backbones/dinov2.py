"""``dinov2_vitb14``: the DINOv2 ViT-B/14 architecture from timm (``vit_base_patch14_dinov2``).

Taps: ``patch_embed`` (a map), ``blocks.0`` … ``blocks.11`` and ``norm`` (768-d patch tokens
``(N, T, D)``, the class token dropped). Pool them with ``gap`` to average the patch tokens or
``flatten`` to keep them. Image sides must be multiples of 14; ``preprocess`` resizes and crops
to ``image_size`` (518, the size DINOv2 was trained at). ``weights="default"`` reads timm's
``model.safetensors`` from the Hugging Face cache or the torch hub folder; a file in Meta's
original format (``dinov2_vitb14_pretrain.pth``) is converted by timm's own filter.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.transforms import InterpolationMode

from esq import ConfigError, check_int
from esq_backbones.base import FrozenBackbone
from esq_backbones.images import ImageTransform, check_size_multiple
from esq_backbones.weights import PretrainedFile, huggingface_file

MODEL = "vit_base_patch14_dinov2.lvd142m"
PATCH = 14


class DINOv2ViTB14(FrozenBackbone):
    """DINOv2 ViT-B/14 (timm), frozen; 768-d patch tokens from ``norm`` by default."""

    name = "dinov2_vitb14"
    probe_size = 28

    def __init__(
        self, weights: str | Path = "none", layer: str = "norm", image_size: int = 518, batch_size: int = 16
    ) -> None:
        import timm

        if check_int(self.name, "image_size", image_size, minimum=PATCH) % PATCH:
            raise ConfigError(
                f"{self.name}: image_size must be a multiple of the patch size {PATCH} (518 = 37 × 14), "
                f"got {image_size!r}"
            )
        from timm.models.vision_transformer import checkpoint_filter_fn

        network = timm.create_model(MODEL, pretrained=False, dynamic_img_size=True)
        self.load_weights(weights, network, convert=lambda state: checkpoint_filter_fn(state, network))
        taps = {"patch_embed": network.patch_embed}
        taps.update({f"blocks.{index}": block for index, block in enumerate(network.blocks)})
        taps["norm"] = network.norm
        super().__init__(network, taps, layer, weights=weights, batch_size=batch_size)
        self.prefix_tokens = network.num_prefix_tokens
        self.image_size = image_size
        config = network.pretrained_cfg
        self.preprocess = ImageTransform(
            self.name, config["mean"], config["std"], image_size, image_size, InterpolationMode(config["interpolation"])
        )

    @classmethod
    def pretrained_files(cls) -> list[PretrainedFile]:
        return [huggingface_file(f"timm/{MODEL}", "model.safetensors", f"{MODEL}.safetensors")]

    def _check_size(self, height: int, width: int) -> None:
        check_size_multiple(self.name, PATCH, "the patch size", height, width)

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.forward_features(images)

    def _tap_output(self, name: str, output: torch.Tensor) -> torch.Tensor:
        if name == "patch_embed":
            return output.permute(0, 3, 1, 2)
        return output[:, self.prefix_tokens :]
