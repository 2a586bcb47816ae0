"""Images in, normalised RGB batches out: each backbone's ``preprocess`` and its input checks.

Grayscale is converted to RGB (the one channel repeated); RGBA and other channel counts are
refused, because dropping alpha silently changes what transparent pixels look like.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from esq import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def rgb_batch(images: torch.Tensor, name: str) -> torch.Tensor:
    """A float ``(N, 3, H, W)`` batch; one channel becomes three, anything else but 3 is refused."""
    if not torch.is_tensor(images) or images.ndim != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise DataError(f"{name}: expected an image batch of shape (N, C, H, W), got {shape}")
    if images.shape[0] == 0:
        raise DataError(f"{name}: the image batch is empty")
    if not images.is_floating_point():
        raise DataError(
            f"{name}: expected float images, got {images.dtype}; pass them through backbone.preprocess(images) first"
        )
    channels = images.shape[1]
    if channels == 1:
        return images.expand(-1, 3, -1, -1)
    if channels == 4:
        raise DataError(
            f"{name}: images have 4 channels (RGBA); drop or composite the alpha channel first "
            "(PIL: image.convert('RGB'), tensors: images[:, :3])"
        )
    if channels != 3:
        raise DataError(f"{name}: images have {channels} channels; expected 3 (RGB) or 1 (grayscale)")
    return images


def check_size_multiple(name: str, multiple: int, reason: str, height: int, width: int) -> None:
    """Both image sides must be multiples of ``multiple`` (``reason`` says why: a patch size...)."""
    if height % multiple or width % multiple:
        fit = f"{max(multiple, height // multiple * multiple)}×{max(multiple, width // multiple * multiple)}"
        raise DataError(
            f"{name}: image sides must be multiples of {multiple} ({reason}), got {height}×{width}; "
            f"resize or crop them (e.g. to {fit})"
        )


ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _pil_rgb(image: Any, name: str) -> Any:
    """An 8-bit RGB or L PIL image, or a ``DataError`` for alpha and 16-bit/float images."""
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        raise DataError(
            f"{name}: image has an alpha channel (mode {image.mode}); convert it with image.convert('RGB') first"
        )
    if image.mode in DEEP_MODES:
        raise DataError(
            f"{name}: image has 16-bit or float pixels (mode {image.mode}); scale it to 8-bit RGB first, "
            "or pass a float tensor in [0, 1]"
        )
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


class ImageTransform:
    """What a backbone's weights expect: optional resize of the short side and centre crop (the
    arithmetic of torchvision's transforms, applied to the image as given), RGB in [0, 1], then
    normalisation by ``mean`` and ``std``.

    Takes a PIL image, a list of them, or a tensor ``(C, H, W)`` / ``(N, C, H, W)`` (uint8 in
    0–255 or float in 0–1); returns a float ``(N, 3, H, W)`` batch.

    >>> transform = ImageTransform("demo", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    >>> transform(torch.full((1, 2, 2), 255, dtype=torch.uint8)).shape
    torch.Size([1, 3, 2, 2])
    """

    def __init__(
        self,
        name: str,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        resize: int | None = None,
        crop: int | None = None,
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    ) -> None:
        self.name = name
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.resize, self.crop, self.interpolation = resize, crop, interpolation

    def __repr__(self) -> str:
        return (
            f"ImageTransform(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}, "
            f"resize={self.resize}, crop={self.crop})"
        )

    def _stack(self, batches: list[torch.Tensor]) -> torch.Tensor:
        if not batches:
            raise DataError(f"{self.name}: preprocess got an empty list of images")
        sizes = sorted({tuple(batch.shape[-2:]) for batch in batches})
        if len(sizes) > 1:
            raise DataError(
                f"{self.name}: the images have different sizes ({', '.join(f'{h}×{w}' for h, w in sizes[:3])}); "
                "resize them to one size first"
            )
        return torch.cat(batches)

    def _as_image(self, images: Any) -> Any:
        """A PIL image in RGB or L, or a 4-D uint8/float tensor: what resize and crop take."""
        if not torch.is_tensor(images):
            if hasattr(images, "mode") and hasattr(images, "size"):
                return _pil_rgb(images, self.name)
            raise DataError(f"{self.name}: preprocess takes PIL images or tensors, got {type(images).__name__}")
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise DataError(f"{self.name}: images must be uint8 (0–255) or float (0–1), got {images.dtype}")
        return images

    def __call__(self, images: Any) -> torch.Tensor:
        if isinstance(images, (list, tuple)):
            return self._stack([self(image) for image in images])
        image = self._as_image(images)
        # resize and crop with the functions torchvision's weight transforms call, on the image as given
        if self.resize is not None:
            image = TF.resize(image, [self.resize], interpolation=self.interpolation, antialias=True)
        if self.crop is not None:
            height, width = TF.get_dimensions(image)[1:]
            if min(height, width) < self.crop:
                raise DataError(f"{self.name}: images of {height}×{width} are smaller than the {self.crop} px crop")
            image = TF.center_crop(image, [self.crop])
        if not torch.is_tensor(image):
            image = TF.pil_to_tensor(image).unsqueeze(0)
        batch = rgb_batch(image.float() / 255 if image.dtype == torch.uint8 else image.float(), self.name)
        return (batch - self.mean.to(batch.device)) / self.std.to(batch.device)
