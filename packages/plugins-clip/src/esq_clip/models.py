"""Chinese-CLIP image and text encoders (the ``cn-clip`` package's ``CLIP``), frozen, in float32.

``ChineseCLIP(vision_model="ViT-B-16", text_model="RoBERTa-wwm-ext-base-chinese", weights=...)``
builds the architecture cn-clip describes in its ``model_configs/`` (any vision config it ships:
RN50, ViT-B-16, ViT-B-32, ViT-L-14, ViT-L-14-336, ViT-H-14; any text config: RBT3-chinese,
RoBERTa-wwm-ext-base-chinese, RoBERTa-wwm-ext-large-chinese). ``weights`` is ``"none"`` (random
initialisation, for tests) or a local checkpoint as Chinese-CLIP's training writes it
(``epoch_latest.pt``: ``{"state_dict": ...}``, keys possibly prefixed ``module.``) or as its
released models are (the same layout). Nothing is downloaded.

As the official evaluation does: images are resized to the model's resolution (bicubic, no
crop), converted to RGB and normalised with CLIP's mean and std; texts are tokenised with the
BERT vocabulary to 52 tokens; both embeddings are L2-normalised. cn-clip converts its weights to
float16 for GPUs; here they stay float32 (CPU) unless ``dtype`` says otherwise.

As an esq backbone it has one layer, ``embedding``: the normalised image embedding as one token,
``(N, 1, D)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esq import CheckpointError, ConfigError, DataError, WithOptions, check_int, load_torch_file

CONTEXT_LENGTH = 52
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def config_folder() -> Path:
    import cn_clip.clip

    return Path(cn_clip.clip.__file__).parent / "model_configs"


def available_configs() -> list[str]:
    return sorted(path.stem for path in config_folder().glob("*.json"))


def model_info(vision_model: str, text_model: str) -> dict[str, Any]:
    """The keyword arguments of cn-clip's ``CLIP`` for a vision and a text config."""
    info: dict[str, Any] = {}
    for kind, name in (("vision_model", vision_model), ("text_model", text_model)):
        path = config_folder() / f"{name.replace('/', '-')}.json"
        if not path.is_file():
            raise ConfigError(f"{kind} {name!r} is not a cn-clip config; available: {', '.join(available_configs())}")
        info.update(json.loads(path.read_text(encoding="utf-8")))
    if "vision_layers" not in info or "vocab_size" not in info:
        raise ConfigError(
            f"vision_model {vision_model!r} and text_model {text_model!r}: pass one vision and one text config"
        )
    if isinstance(info["vision_layers"], str):  # "[3,4,6,3]" in the RN50 config
        info["vision_layers"] = json.loads(info["vision_layers"])
    return info


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a Chinese-CLIP checkpoint, ``module.`` prefixes removed (weights only)."""
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint; give the path of a Chinese-CLIP checkpoint (epoch_latest.pt or a released "
            "clip_cn_*.pt), or weights='none' for random weights"
        )
    checkpoint = load_torch_file(path, mmap=True)  # mmap: check_checkpoint is cheap
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        found = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: expected a dict with a 'state_dict' of tensors; found {found}")
    return {key.removeprefix("module."): value for key, value in state.items() if "bert.pooler" not in key}


def check_checkpoint(path: Path, vision_model: str, text_model: str) -> None:
    """What loading ``path`` into this architecture would refuse, found without building the
    network in memory (it is built on the meta device; the checkpoint is memory-mapped)."""
    from cn_clip.clip.model import CLIP

    with torch.device("meta"):
        network = CLIP(**model_info(vision_model, text_model))
    check_state(network, read_checkpoint(path), path)


def check_state(network: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Another architecture's file names its missing, extra and mis-shaped keys."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or extra or shapes:

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

        raise CheckpointError(
            f"{path}: not a checkpoint of this architecture: {len(missing)} missing keys [{few(missing)}], "
            f"{len(extra)} extra [{few(extra)}], {len(shapes)} of another shape [{few(shapes)}]; "
            "check vision_model and text_model"
        )


def load_state(network: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` strictly (:func:`check_state` first)."""
    check_state(network, state, path)
    network.load_state_dict({key: value.float() for key, value in state.items()})


class ChineseCLIP(WithOptions, nn.Module):
    """Frozen Chinese-CLIP encoders: ``encode_images(images)`` and ``encode_texts(texts)`` give
    L2-normalised float32 embeddings."""

    name = "chinese_clip"

    def __init__(
        self,
        vision_model: str = "ViT-B-16",
        text_model: str = "RoBERTa-wwm-ext-base-chinese",
        weights: str | Path = "none",
        batch_size: int = 64,
    ) -> None:
        super().__init__()
        from cn_clip.clip.model import CLIP

        self.batch_size = check_int("chinese_clip", "batch_size", batch_size, minimum=1)
        info = model_info(vision_model, text_model)
        self.network = CLIP(**info)
        if str(weights) != "none":
            load_state(self.network, read_checkpoint(Path(weights)), Path(weights))
        self.network.eval().requires_grad_(False)
        self.resolution = int(info["image_resolution"])
        self.feature_dim = int(info["embed_dim"])
        self.vision_model, self.text_model, self.weights = vision_model, text_model, str(weights)

    def train(self, mode: bool = True) -> ChineseCLIP:
        super().train(mode)
        self.network.eval()  # frozen: dropout and batch norm stay in evaluation mode
        return self

    def preprocess(self, images: Any) -> torch.Tensor:
        """PIL images, or a uint8/float (N, 3, H, W) batch → the normalised (N, 3, R, R) batch."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        size = [self.resolution, self.resolution]
        if torch.is_tensor(images):
            batch = images.float() / 255 if images.dtype == torch.uint8 else images.float()
            batch = F.resize(batch, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
        else:
            batch = torch.stack(
                [
                    F.to_tensor(F.resize(image, size, interpolation=InterpolationMode.BICUBIC).convert("RGB"))
                    for image in images
                ]
            )
        return F.normalize(batch, MEAN, STD)

    @property
    def device(self) -> torch.device:
        """Where the network's weights are (``.to(device)`` moves them); inputs are moved there."""
        return next(self.network.parameters()).device

    def layers(self) -> list[str]:
        return ["embedding"]

    def _batches(self, count: int) -> list[slice]:
        return [slice(start, start + self.batch_size) for start in range(0, count, self.batch_size)]

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings of preprocessed images, (N, D) float32."""
        if images.ndim != 4 or images.shape[-2:] != (self.resolution, self.resolution):
            raise DataError(
                f"chinese_clip: expected preprocessed images (N, 3, {self.resolution}, {self.resolution}), got "
                f"{tuple(images.shape)}; pass them through .preprocess first"
            )
        device = self.device
        parts = [self.network.encode_image(images[part].to(device).float()) for part in self._batches(len(images))]
        features = torch.cat(parts).float()
        return features / features.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings, (N, D) float32; each text tokenised to 52 tokens."""
        from cn_clip.clip import tokenize

        texts = list(texts)
        parts = [
            self.network.encode_text(tokenize(texts[part], context_length=CONTEXT_LENGTH).to(self.device))
            for part in self._batches(len(texts))
        ]
        features = torch.cat(parts).float()
        return features / features.norm(dim=-1, keepdim=True)

    def features(self, images: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        for layer in layers or ["embedding"]:
            if layer != "embedding":
                raise ConfigError(f"chinese_clip: unknown layer {layer!r}; its one layer is 'embedding'")
        return {"embedding": self.encode_images(images).unsqueeze(1).clone()}
