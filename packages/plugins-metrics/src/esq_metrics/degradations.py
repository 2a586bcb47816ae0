"""Graded image degradations for ``esq run degradation``: blur, noise, blur then contrast,
aliasing and JPEG, each with levels from mild to severe.

``degradation.apply(images, level, seed)`` takes a batch ``(N, C, H, W)`` with 1 (grayscale) or
3 (RGB) channels, uint8 in 0–255 or float in [0, 1], and returns a new batch of the same shape,
dtype and device; the input is left alone. uint8 results are rounded to the nearest integer and
clamped to 0–255, float results are clamped to [0, 1]. The same images, level and seed give the
same images.

The default ``levels`` are those of the pipeline esq replaces (projetmetric's ``config.py``).
``levels="imagenet_c"`` selects the five severities of ImageNet-C (Hendrycks & Dietterich,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR 2019)
where it has the same corruption; any strictly increasing list of levels in range works too.

Each degradation says what its level is (``level_name``, ``level_unit``: "blur σ" in "px",
"noise std" on the "0–255 scale", ...), which ``esq run degradation`` writes on its plots' axes
and in ``results.csv``; a plugin's degradation declares the same two attributes (both optional).
"""

from __future__ import annotations

import io
import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from esq import ConfigError, DataError, WithOptions, check_int

# ITU-R 601-2 luma, the weights of PIL's convert("L") that ImageEnhance.Contrast averages.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _number(value: Any) -> int | float | None:
    """``value`` as a plain int or float, or None when it is not a real number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def check_images(name: str, images: Any) -> None:
    """Refuse, with a :class:`DataError` that says what to do, anything but an image batch.

    >>> check_images("demo", torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    >>> check_images("demo", torch.zeros(3, 4, 4))
    Traceback (most recent call last):
    ...
    esq.errors.DataError: demo: expected an image batch of shape (N, C, H, W), got (3, 4, 4); ...
    """
    if not torch.is_tensor(images):
        raise DataError(
            f"{name}: expected a torch.Tensor image batch (N, C, H, W), got {type(images).__name__}; "
            "convert it with torch.as_tensor(...)"
        )
    if images.ndim != 4:
        fix = "add the batch axis with images.unsqueeze(0)" if images.ndim == 3 else "pass (N, C, H, W) images"
        raise DataError(f"{name}: expected an image batch of shape (N, C, H, W), got {tuple(images.shape)}; {fix}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise DataError(
            f"{name}: expected uint8 images in 0–255 or float images in [0, 1], got {images.dtype}; "
            "convert with images.to(torch.uint8) or images.float() / 255"
        )
    channels, height, width = images.shape[1:]
    if channels not in (1, 3):
        raise DataError(f"{name}: images have {channels} channels; expected 3 (RGB) or 1 (grayscale)")
    if height == 0 or width == 0:
        raise DataError(f"{name}: images are {height}×{width}; they need at least one pixel")
    if images.is_floating_point() and images.numel():
        if not bool(torch.isfinite(images).all()):
            raise DataError(f"{name}: float images contain NaN or infinite values")
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            raise DataError(
                f"{name}: float images must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
                "divide 0–255 images by 255, and undo any mean/std normalisation first"
            )


def _working(images: torch.Tensor) -> torch.Tensor:
    """A float copy to compute on: float64 for float64 input, float32 otherwise (same scale)."""
    return images.to(torch.float64 if images.dtype == torch.float64 else torch.float32, copy=True)


def _like(result: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``result`` back in the dtype of ``images``: uint8 rounded and clamped, float clamped to [0, 1]."""
    if images.dtype == torch.uint8:
        return result.round().clamp(0, 255).to(torch.uint8)
    return result.clamp(0, 1).to(images.dtype)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The sampled, normalised 1-D Gaussian of standard deviation ``sigma`` > 0, in float64:
    k[i] ∝ exp(−i² / 2σ²) for i in −r..r with r = ⌈3σ⌉, so 2⌈3σ⌉ + 1 taps.

    >>> gaussian_kernel(1.0).shape, round(float(gaussian_kernel(1.0).sum()), 12)
    (torch.Size([7]), 1.0)
    """
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of float images ``(N, C, H, W)``; edges are extended by
    replication (so any σ works on any image size). σ = 0 returns a copy.

    >>> gaussian_blur(torch.ones(1, 1, 3, 3), 2.0).allclose(torch.ones(1, 1, 3, 3))
    True
    """
    if sigma == 0:
        return images.clone()
    kernel = gaussian_kernel(sigma).to(images.dtype).to(images.device)
    radius = kernel.numel() // 2
    n, c, h, w = images.shape
    planes = images.reshape(n * c, 1, h, w)
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return planes.reshape(n, c, h, w)


def reduce_contrast(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend float images towards their mean grey: m + factor·(x − m), where m is each image's
    mean luma (0.299 R + 0.587 G + 0.114 B; the mean of the channel for grayscale), as
    ``PIL.ImageEnhance.Contrast`` does. Factor 1 returns a copy, 0 makes the image flat grey.

    >>> reduce_contrast(torch.tensor([[[[0.0, 1.0]]]]), 0.5)
    tensor([[[[0.2500, 0.7500]]]])
    """
    if factor == 1:
        return images.clone()
    if images.shape[1] == 3:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        luma = (images * weights).sum(dim=1, keepdim=True)
    else:
        luma = images
    mean = luma.mean(dim=(1, 2, 3), keepdim=True)
    return mean + factor * (images - mean)


def nearest_indices(size_in: int, size_out: int) -> torch.Tensor:
    """Source index of each output pixel when nearest-neighbour resizing ``size_in`` pixels to
    ``size_out``, by pixel centres (the convention of PIL's NEAREST and torch's
    ``nearest-exact``): ⌊(i + ½)·size_in / size_out⌋, in exact integer arithmetic.

    >>> nearest_indices(6, 3).tolist(), nearest_indices(3, 6).tolist()
    ([1, 3, 5], [0, 0, 1, 1, 2, 2])
    """
    return ((2 * torch.arange(size_out) + 1) * size_in) // (2 * size_out)


class ImageDegradation(WithOptions):
    """What the five degradations share: ``levels`` (a preset name or numbers), ``options``,
    and ``apply``, which checks the level, the images and the seed before degrading.

    >>> blur = GaussianBlur(levels="imagenet_c")
    >>> blur.options
    {'levels': (1, 2, 3, 4, 6)}
    >>> GaussianBlur(**blur.options).levels
    (1, 2, 3, 4, 6)
    """

    name: ClassVar[str] = ""
    # What a level is, for plots' axes and results ("blur σ (px)"): any degradation, a plugin's
    # too, may declare both; esq run degradation labels an axis "level" when it declares neither.
    level_name: ClassVar[str] = "level"
    level_unit: ClassVar[str] = ""
    reference_levels: ClassVar[tuple[float, ...]] = ()
    presets: ClassVar[dict[str, tuple[float, ...]]] = {}

    def __init__(self, levels: Sequence[float] | str = "reference") -> None:
        self.levels = self._resolve_levels(levels)

    def apply(self, images: torch.Tensor, level: float, seed: int = 0, *, first_index: int = 0) -> torch.Tensor:
        """``images`` degraded at ``level``, in their own shape, dtype and device.

        ``seed`` drives the random degradations; image ``i`` of the batch draws from a generator
        seeded with ``(seed, first_index + i)``, so a set degraded in chunks (``first_index`` =
        the chunk's offset) gets the images it would get in one batch.
        """
        value = self._check_level(level)
        check_images(self.name, images)
        seed = check_int(self.name, "seed", seed, minimum=0)
        first_index = check_int(self.name, "first_index", first_index, minimum=0)
        if images.shape[0] == 0:
            return images.clone()
        return self._degrade(images, value, seed, first_index)

    def _degrade(self, images: torch.Tensor, level: float, seed: int, first_index: int) -> torch.Tensor:
        raise NotImplementedError

    def _in_range(self, level: int | float) -> bool:
        raise NotImplementedError

    def _range(self) -> str:
        """The valid levels, in words, for error messages."""
        raise NotImplementedError

    def _check_level(self, level: Any) -> int | float:
        value = _number(level)
        if value is None or not math.isfinite(value) or not self._in_range(value):
            raise ConfigError(f"{self.name}: level {level!r} is out of range; expected {self._range()}")
        return value

    def _default_levels(self) -> tuple[int | float, ...]:
        return self.reference_levels

    def _resolve_levels(self, levels: Sequence[float] | str) -> tuple[int | float, ...]:
        if isinstance(levels, str):
            if levels == "reference":
                return self._default_levels()
            if levels not in self.presets:
                names = ", ".join(repr(name) for name in ("reference", *self.presets))
                raise ConfigError(f"{self.name}: no level preset {levels!r}; use one of {names} or a list of levels")
            return self.presets[levels]
        try:
            values = [_number(value) for value in levels]
        except TypeError:
            raise ConfigError(
                f"{self.name}: levels must be a list of numbers or a preset name, got {levels!r}"
            ) from None
        if not values or any(
            value is None or not math.isfinite(value) or not self._in_range(value) for value in values
        ):
            raise ConfigError(f"{self.name}: levels {list(levels)} must be a non-empty list of {self._range()}")
        if any(later <= earlier for earlier, later in itertools.pairwise(values)):
            raise ConfigError(
                f"{self.name}: levels {values} must be strictly increasing (ordered from mild to severe); sort them"
            )
        return tuple(values)

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"{type(self).__name__}({options})"


class GaussianBlur(ImageDegradation):
    """Gaussian blur; the level is σ in pixels.

    Each channel is convolved with the sampled Gaussian k[i] ∝ exp(−i² / 2σ²), i = −⌈3σ⌉..⌈3σ⌉
    (2⌈3σ⌉ + 1 taps, normalised to sum 1), along rows then columns; edges are extended by
    replication. σ = 0 is the clean image.

    Default levels σ = 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.3, 1.6, 2, 2.5, 3 (the reference's
    ``config.py``; the reference passed ``radius=max(1, int(2σ))`` to PIL's GaussianBlur, whose
    radius is the standard deviation, so its images were blurred more than σ). ``levels=
    "imagenet_c"``: σ = 1, 2, 3, 4, 6 (ImageNet-C's gaussian_blur).

    >>> blur = GaussianBlur()
    >>> blur.levels[:3]
    (0.1, 0.2, 0.3)
    >>> images = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    >>> images[0, 0, 2, 2] = 255
    >>> blur.apply(images, 1.0, seed=0)[0, 0, 2]
    tensor([ 5, 25, 41, 25,  5], dtype=torch.uint8)
    """

    name = "gaussian_blur"
    level_name = "blur σ"
    level_unit = "px"
    reference_levels: ClassVar[tuple[float, ...]] = (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.3, 1.6, 2, 2.5, 3)
    presets: ClassVar[dict[str, tuple[float, ...]]] = {"imagenet_c": (1, 2, 3, 4, 6)}

    def _in_range(self, level: int | float) -> bool:
        return level >= 0

    def _range(self) -> str:
        return "σ ≥ 0 in pixels (0 is the clean image)"

    def _degrade(self, images: torch.Tensor, level: float, seed: int, first_index: int) -> torch.Tensor:
        return _like(gaussian_blur(_working(images), level), images)


class GaussianNoise(ImageDegradation):
    """Additive Gaussian noise; the level is its standard deviation on the 0–255 scale.

    uint8 images: y = clamp(round(x + std·z), 0, 255), computed in float64, so the noise is
    unbiased (torchvision's uint8 path truncates, which darkens the image by half a grey level
    on average). Float images in [0, 1]: y = clamp(x + (std / 255)·z, 0, 1). z is standard
    normal, drawn for image i of the batch from ``numpy.random.default_rng([seed, first_index
    + i])``: the same for a uint8 image and its float copy, and independent between images.
    std = 0 is the clean image.

    Default levels std = 1, 2, 3, 5, 7, 9, 12, 15, 18, 22, 26, 30 (the reference's
    ``config.py``). ``levels="imagenet_c"``: 0.08, 0.12, 0.18, 0.26, 0.38 of the [0, 1] range,
    that is std = 20.4, 30.6, 45.9, 66.3, 96.9 (ImageNet-C's gaussian_noise).

    >>> noise = GaussianNoise()
    >>> images = torch.full((2, 3, 8, 8), 128, dtype=torch.uint8)
    >>> out = noise.apply(images, 30, seed=1)
    >>> out.dtype, torch.equal(out, noise.apply(images, 30, seed=1)), torch.equal(out[0], out[1])
    (torch.uint8, True, False)
    """

    name = "gaussian_noise"
    level_name = "noise std"
    level_unit = "0–255 scale"
    reference_levels: ClassVar[tuple[float, ...]] = (1, 2, 3, 5, 7, 9, 12, 15, 18, 22, 26, 30)
    presets: ClassVar[dict[str, tuple[float, ...]]] = {"imagenet_c": (20.4, 30.6, 45.9, 66.3, 96.9)}

    def _in_range(self, level: int | float) -> bool:
        return level >= 0

    def _range(self) -> str:
        return "std ≥ 0 on the 0–255 scale (0 is the clean image)"

    def _degrade(self, images: torch.Tensor, level: float, seed: int, first_index: int) -> torch.Tensor:
        if level == 0:
            return images.clone()
        std = level if images.dtype == torch.uint8 else level / 255
        noisy = images.to(torch.float64, copy=True)
        for index in range(images.shape[0]):
            generator = np.random.default_rng([seed, first_index + index])
            noise = torch.from_numpy(generator.standard_normal(tuple(images.shape[1:])))
            noisy[index] += std * noise.to(noisy.device)
        return _like(noisy, images)


class BlurContrast(ImageDegradation):
    """Gaussian blur, then contrast reduction; the level is a step of a table of pairs.

    Step s (1..len(sigmas)) blurs with σ = ``sigmas[s-1]`` as :class:`GaussianBlur` does, then
    blends each image towards its mean luma m: y = m + f·(x − m) with f =
    ``contrast_factors[s-1]`` (``PIL.ImageEnhance.Contrast``'s formula; m from 0.299 R + 0.587 G
    + 0.114 B). Step 0 is the clean image (σ 0, f 1); a fractional step interpolates σ and f
    linearly between its neighbours.

    Defaults: the reference's pairs (σ, f) = (0.1, 0.95), (0.3, 0.9), (0.5, 0.85), (0.8, 0.8),
    (1, 0.75), (1.5, 0.7) and levels 1..6: its ``config.py``'s ``blur_levels`` and
    ``contrast_factors`` paired by position, as its ``get_degradation_info`` reports them (its
    ``apply_degradation`` used factor 0.95 at every one of the six levels). ImageNet-C has no
    blur-plus-contrast corruption; its gaussian_blur and contrast severities pair up as
    ``sigmas=[1, 2, 3, 4, 6], contrast_factors=[0.4, 0.3, 0.2, 0.1, 0.05]``.

    >>> degradation = BlurContrast()
    >>> degradation.levels, degradation.step(6), degradation.step(0.5)
    ((1, 2, 3, 4, 5, 6), (1.5, 0.7), (0.05, 0.975))
    """

    name = "blur_contrast"
    level_name = "blur + contrast step"
    level_unit = "index into sigmas / contrast_factors"

    def __init__(
        self,
        levels: Sequence[float] | str = "reference",
        sigmas: Sequence[float] = (0.1, 0.3, 0.5, 0.8, 1.0, 1.5),
        contrast_factors: Sequence[float] = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7),
    ) -> None:
        self.sigmas = self._table("sigmas", sigmas, lambda v: v >= 0, "numbers ≥ 0", increasing=True)
        self.contrast_factors = self._table(
            "contrast_factors", contrast_factors, lambda v: 0 <= v <= 1, "numbers in [0, 1]", increasing=False
        )
        if len(self.sigmas) != len(self.contrast_factors):
            raise ConfigError(
                f"{self.name}: sigmas ({len(self.sigmas)}) and contrast_factors ({len(self.contrast_factors)}) "
                "must pair up; give both the same length"
            )
        super().__init__(levels)

    def _table(
        self, what: str, values: Sequence[float], valid: Callable[[float], bool], words: str, increasing: bool
    ) -> tuple[int | float, ...]:
        try:
            parsed = [_number(value) for value in values]
        except TypeError:
            raise ConfigError(f"{self.name}: {what} must be a list of {words}, got {values!r}") from None
        if not parsed or any(v is None or not math.isfinite(v) or not valid(v) for v in parsed):
            raise ConfigError(f"{self.name}: {what} must be a non-empty list of {words}, got {list(values)}")
        if any((b < a) if increasing else (b > a) for a, b in itertools.pairwise(parsed)):
            order = "non-decreasing" if increasing else "non-increasing"
            raise ConfigError(f"{self.name}: {what} {parsed} must be {order}, so that later steps are more severe")
        return tuple(parsed)

    def step(self, level: float) -> tuple[float, float]:
        """(σ, contrast factor) at ``level``, interpolated between whole steps."""
        value = self._check_level(level)
        sigmas, factors = (0.0, *self.sigmas), (1.0, *self.contrast_factors)
        low = min(math.floor(value), len(self.sigmas) - 1)
        t = value - low
        sigma = sigmas[low] + t * (sigmas[low + 1] - sigmas[low])
        factor = factors[low] + t * (factors[low + 1] - factors[low])
        return sigma, factor

    def _default_levels(self) -> tuple[int | float, ...]:
        return tuple(range(1, len(self.sigmas) + 1))

    def _in_range(self, level: int | float) -> bool:
        return 0 <= level <= len(self.sigmas)

    def _range(self) -> str:
        return f"a step from 0 to {len(self.sigmas)} (0 is the clean image, steps index sigmas/contrast_factors)"

    def _degrade(self, images: torch.Tensor, level: float, seed: int, first_index: int) -> torch.Tensor:
        sigma, factor = self.step(level)
        return _like(reduce_contrast(gaussian_blur(_working(images), sigma), factor), images)


class Aliasing(ImageDegradation):
    """Nearest-neighbour down-sampling by a factor, then nearest-neighbour up-sampling back to
    the original size; the level is the factor (≥ 1, need not be whole).

    An H×W image goes to h×w = max(1, ⌊H / factor⌋) × max(1, ⌊W / factor⌋) and back, each pixel
    taking the value of the source pixel whose centre is nearest (⌊(i + ½)·in / out⌋, PIL's
    NEAREST convention). Nothing is averaged: down-sampling without a low-pass filter folds high
    frequencies into low ones, which is the aliasing measured (an antialiased resize would be a
    blur). Factor 1 is the clean image.

    Default levels 2, 4, 8: whole factors, each halving the resolution again. The reference's
    ``config.py`` has 1.1, 1.2, 1.3, 1.5, 1.7, 2, 2.3, 2.7, 3 (its first version 2, 4, 6, 8);
    pass them as ``levels=[...]``. They degrade photographs monotonically, but with factors
    that are not powers of two the change also depends on where the sampling grid falls
    against sharp edges, and on the synthetic image of ``esq.testing.check_degradation`` (a
    square from pixel 8 to 24) factor 1.2 changes more than 1.3, and 6 more than 8.
    ``levels="imagenet_c"``: 1/0.6, 2, 2.5, 1/0.3, 4, the size ratios of ImageNet-C's
    pixelate, which resizes with PIL's BOX filter (an average) instead.

    >>> images = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    >>> Aliasing().apply(images, 2, seed=0)[0, 0]
    tensor([[ 5,  5,  7,  7],
            [ 5,  5,  7,  7],
            [13, 13, 15, 15],
            [13, 13, 15, 15]], dtype=torch.uint8)
    """

    name = "aliasing"
    level_name = "down-sampling factor"
    level_unit = "×"
    reference_levels: ClassVar[tuple[float, ...]] = (2, 4, 8)
    presets: ClassVar[dict[str, tuple[float, ...]]] = {"imagenet_c": (1 / 0.6, 2, 2.5, 1 / 0.3, 4)}

    def _in_range(self, level: int | float) -> bool:
        return level >= 1

    def _range(self) -> str:
        return "a down-sampling factor ≥ 1 (1 is the clean image)"

    def _degrade(self, images: torch.Tensor, level: float, seed: int, first_index: int) -> torch.Tensor:
        height, width = images.shape[-2:]
        # The small epsilon keeps ⌊30 / 1.2⌋ at 25 despite 1.2 not being exact in binary.
        small_height = max(1, math.floor(height / level + 1e-9))
        small_width = max(1, math.floor(width / level + 1e-9))
        rows = nearest_indices(height, small_height)[nearest_indices(small_height, height)]
        columns = nearest_indices(width, small_width)[nearest_indices(small_width, width)]
        return images.index_select(2, rows.to(images.device)).index_select(3, columns.to(images.device))


class JPEG(ImageDegradation):
    """JPEG compression through PIL, image by image; the level is 100 − quality, so it grows
    with severity (level 10 = quality 90; level 0 = quality 100, still lossy).

    Each image is encoded with ``PIL.Image.save(format="JPEG", quality=100 − level)`` (PIL's
    default 4:2:0 chroma subsampling for RGB) and decoded again. Float images are quantised to
    8 bits first (round(255·x)) and come back as decoded / 255.

    Default levels 10, 30, 50, 70, 90, that is quality 90, 70, 50, 30, 10 (the JPEG example in
    the reference's guide, which its code never ran). ``levels="imagenet_c"``: 75, 82, 85, 90,
    93, quality 25, 18, 15, 10, 7 (ImageNet-C's jpeg_compression).

    >>> jpeg = JPEG()
    >>> images = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    >>> out = jpeg.apply(images, 90, seed=0)
    >>> out.shape, out.dtype
    (torch.Size([2, 3, 16, 16]), torch.uint8)
    """

    name = "jpeg"
    level_name = "100 − JPEG quality"
    reference_levels: ClassVar[tuple[float, ...]] = (10, 30, 50, 70, 90)
    presets: ClassVar[dict[str, tuple[float, ...]]] = {"imagenet_c": (75, 82, 85, 90, 93)}

    def _in_range(self, level: int | float) -> bool:
        return 0 <= level <= 99 and float(level).is_integer()

    def _range(self) -> str:
        return "a whole number from 0 to 99 (quality = 100 − level)"

    def _check_level(self, level: Any) -> int:
        return int(super()._check_level(level))

    def _resolve_levels(self, levels: Sequence[float] | str) -> tuple[int, ...]:
        return tuple(int(level) for level in super()._resolve_levels(levels))

    def _degrade(self, images: torch.Tensor, level: float, seed: int, first_index: int) -> torch.Tensor:
        quality = 100 - int(level)
        if images.dtype == torch.uint8:
            pixels = images
        else:
            pixels = (images.to(torch.float64) * 255).round().clamp(0, 255).to(torch.uint8)
        array = pixels.cpu().numpy()
        decoded = np.empty_like(array)
        for index, image in enumerate(array):
            planar = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(planar)).save(buffer, format="JPEG", quality=quality)
            buffer.seek(0)
            with Image.open(buffer) as compressed:
                result = np.asarray(compressed)
            decoded[index] = result[None] if result.ndim == 2 else result.transpose(2, 0, 1)
        out = torch.from_numpy(decoded).to(images.device)
        if images.dtype == torch.uint8:
            return out
        return (out.to(torch.float64) / 255).to(images.dtype)
