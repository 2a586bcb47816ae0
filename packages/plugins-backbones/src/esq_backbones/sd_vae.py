"""``sd_vae``: the encoder of Stable Diffusion's VAE (``AutoencoderKL``), through ``diffusers``
(``pip install 'esq-backbones[sd-vae]'``).

Taps, in order (index ``i`` is the ``i``-th name): ``conv_in``, ``down_blocks.{b}.resnets.{r}``
and ``down_blocks.{b}.downsamplers.0`` for the four stages, ``mid_block.resnets.0``,
``mid_block.attentions.0``, ``mid_block.resnets.1``, ``conv_norm_out``, ``conv_act``,
``conv_out``. At 256 px, index 9 (``down_blocks.2.downsamplers.0``) is 512 × 32 × 32. Images are
expected in [-1, 1] with sides a multiple of 8. ``weights="default"`` reads
``stabilityai/sd-vae-ft-mse`` in diffusers' safetensors layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from esq_backbones.base import FrozenBackbone
from esq_backbones.extras import import_extra
from esq_backbones.images import ImageTransform, check_size_multiple
from esq_backbones.weights import PretrainedFile, huggingface_file

CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 256,
}
DOWNSAMPLING = 8


def renamed_attention_keys(vae: Any, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with old attention names (``query``, ``key``, ``value``, ``proj_attn``) renamed
    by diffusers' own loader rule (``to_q``, ``to_k``, ``to_v``, ``to_out.0``)."""
    state = dict(state)
    vae._fix_state_dict_keys_on_load(state)  # renames in place
    return state


class SDVAEEncoder(FrozenBackbone):
    """Stable Diffusion VAE encoder; ``mid_block.resnets.1`` (512-d) by default."""

    name = "sd_vae"
    probe_size = 16

    def __init__(self, weights: str | Path = "none", layer: str = "mid_block.resnets.1", batch_size: int = 8) -> None:
        diffusers = import_extra("diffusers", self.name, "sd-vae")
        vae = diffusers.AutoencoderKL(**CONFIG)
        # diffusers renames the old attention keys (query/key/value/proj_attn) of SD 1.x files itself
        self.load_weights(weights, vae, convert=lambda state: renamed_attention_keys(vae, state))
        encoder = vae.encoder
        taps = {"conv_in": encoder.conv_in}
        for b, block in enumerate(encoder.down_blocks):
            taps.update({f"down_blocks.{b}.resnets.{r}": resnet for r, resnet in enumerate(block.resnets)})
            if block.downsamplers is not None:
                taps[f"down_blocks.{b}.downsamplers.0"] = block.downsamplers[0]
        middle = encoder.mid_block
        taps.update({"mid_block.resnets.0": middle.resnets[0], "mid_block.attentions.0": middle.attentions[0]})
        taps.update({"mid_block.resnets.1": middle.resnets[1], "conv_norm_out": encoder.conv_norm_out})
        taps.update({"conv_act": encoder.conv_act, "conv_out": encoder.conv_out})
        super().__init__(encoder, taps, layer, weights=weights, batch_size=batch_size)
        self.preprocess = ImageTransform(self.name, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    @classmethod
    def pretrained_files(cls) -> list[PretrainedFile]:
        return [
            huggingface_file(
                "stabilityai/sd-vae-ft-mse", "diffusion_pytorch_model.safetensors", "sd-vae-ft-mse.safetensors"
            )
        ]

    def _check_size(self, height: int, width: int) -> None:
        check_size_multiple(self.name, DOWNSAMPLING, "the encoder downsamples 8×", height, width)
