"""The images a pipeline reads: bundled photographs, generated images, or a folder of files.

``open_images(source, count, size, seed, offset=...)`` gives an ``ImageSet``: images
``offset .. offset + count - 1`` of the source's fixed, ordered pool, all RGB and ``size × size``.
A pipeline takes its reference images with ``offset=0`` and a disjoint evaluation set with
``offset`` = the number of reference images. ``load(start, stop)`` decodes a slice of the set as
a ``uint8`` tensor ``(n, 3, size, size)``, so a large set never sits in memory whole.

Sources:

- ``"builtin"``: no download. Seeded random crops (35–100 % of the shorter side, random place,
  random mirror) of the photographs that ship inside scikit-image and scikit-learn; every fourth
  image (``i % 4 == 3``) is a synthetic one instead.
- ``"synthetic"``: ``synthetic_image`` only: a colour gradient, a few filled shapes and a fine
  texture, so images have both edges and detail.
- anything else: a folder, read recursively in the order of the files' relative paths. Each
  image's shorter side is resized to ``size`` and the centre cropped.

Pool image ``i`` depends only on the source, ``size``, ``seed`` and ``i``, never on ``count`` or
``offset``. ``fingerprint`` identifies the content: the generated pixels, or each chosen file's
relative path and bytes (read, not decoded), together with the loading parameters.

>>> images = open_images("synthetic", count=3, size=32, seed=1)
>>> images.description
'synthetic: 3 generated images (seed 1), 32 px'
>>> images.load(1).shape
torch.Size([2, 3, 32, 32])
>>> images.fingerprint == open_images("synthetic", count=3, size=32, seed=1).fingerprint
True
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from esq import ConfigError, DataError

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Photographs bundled with scikit-image that load offline. Left out: `horse` (a binary mask) and
# `cat` (the same picture as `chelsea`).
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "moon",
    "page",
    "rocket",
    "text",
    "retina",
    "stereo_motorcycle",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
_PHOTOS: tuple[tuple[str, str], ...] = (
    *(("scikit-image", name) for name in SKIMAGE_PHOTOS),
    *(("scikit-learn", name) for name in SKLEARN_PHOTOS),
)
_SYNTHETIC_EVERY = 4  # builtin pool image i is synthetic when i % 4 == 3
_CHUNK = 64  # images generated at a time while hashing

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSet:
    """A fixed, ordered set of RGB images, all size×size, loaded in slices.

    >>> images = open_images("synthetic", count=4, size=16)
    >>> len(images), images.load(0, 2).dtype
    (4, torch.uint8)
    """

    source: str
    count: int
    size: int
    fingerprint: str
    description: str
    _images: Callable[[int, int], np.ndarray] = field(compare=False, repr=False)

    def load(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Images ``start .. stop - 1`` of the set as ``uint8 (n, 3, size, size)``; ``start`` and
        ``stop`` work as in a slice (``stop=None`` is the end, out-of-range values are clipped)."""
        import torch

        first, last, _ = slice(start, stop).indices(self.count)
        if last <= first:
            return torch.empty((0, 3, self.size, self.size), dtype=torch.uint8)
        return torch.from_numpy(self._images(first, last)).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return self.count


def open_images(
    source: str,
    count: int,
    size: int,
    seed: int = 0,
    *,
    offset: int = 0,
    on_unreadable: Literal["stop", "skip"] = "stop",
    log: logging.Logger | None = None,
) -> ImageSet:
    """Images ``offset .. offset + count - 1`` of ``source``'s pool: ``"builtin"``,
    ``"synthetic"`` or a folder. For a folder, ``on_unreadable`` says what a file PIL cannot
    identify does: ``"stop"`` raises ``DataError``, ``"skip"`` logs a warning to ``log`` and
    passes over it. ``seed`` matters only for the generated sources.

    >>> reference = open_images("synthetic", count=4, size=16)
    >>> evaluation = open_images("synthetic", count=2, size=16, offset=4)
    >>> bool((open_images("synthetic", count=6, size=16).load(4) == evaluation.load()).all())
    True
    """
    for name, value, least in (("count", count, 1), ("size", size, 8), ("offset", offset, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"image {name} must be an integer ≥ {least}, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"image seed must be an integer, got {seed!r}")
    if on_unreadable not in ("stop", "skip"):
        raise ConfigError(f"on_unreadable must be 'stop' or 'skip', got {on_unreadable!r}")
    if not isinstance(source, str) or not source:
        raise ConfigError(f"image source must be 'builtin', 'synthetic' or a folder path, got {source!r}")
    log = log or _logger
    if source == "synthetic":
        return _generated_set(source, count, size, seed, offset, _synthetic_pool_image, _synthetic_description)
    if source == "builtin":
        photos = _photos(log)
        if not photos:
            log.warning("builtin images: no bundled photograph could be loaded; using synthetic images only")
        return _generated_set(
            source,
            count,
            size,
            seed,
            offset,
            functools.partial(_builtin_pool_image, photos),
            functools.partial(_builtin_description, photos),
        )
    return _folder_set(source, count, size, offset, on_unreadable, log)


# --- synthetic images -------------------------------------------------------------------------


def gradient_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, image)``: pixel-centre coordinates in [0, 1] and a ``size × size × 3`` float32
    background blending four random corner colours, shared by both synthetic generators."""
    centres = ((np.arange(size) + 0.5) / size).astype(np.float32)
    y, x = centres[:, None], centres[None, :]
    corners = rng.uniform(0, 255, size=(2, 2, 3)).astype(np.float32)
    top = corners[0, 0] + (corners[0, 1] - corners[0, 0]) * x[..., None]
    bottom = corners[1, 0] + (corners[1, 1] - corners[1, 0]) * x[..., None]
    image = top + (bottom - top) * y[..., None]
    return x, y, image


def synthetic_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A generated RGB image, ``uint8 (size, size, 3)``: a smooth colour gradient, 3–7 filled
    ellipses, rectangles and triangles in random colours, and a fine blurred-noise texture.
    The same generator state gives the same image.

    >>> image = synthetic_image(np.random.default_rng(0), 24)
    >>> image.shape, image.dtype
    ((24, 24, 3), dtype('uint8'))
    >>> bool((image == synthetic_image(np.random.default_rng(0), 24)).all())
    True
    """
    x, y, image = gradient_background(rng, size)

    for _ in range(rng.integers(3, 8)):
        kind = rng.integers(3)
        colour = rng.uniform(0, 255, size=3)
        centre_y, centre_x = rng.uniform(0.1, 0.9, size=2)
        radius_y, radius_x = rng.uniform(0.06, 0.3, size=2)
        angle = rng.uniform(0, np.pi)
        cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dy, dx = y - np.float32(centre_y), x - np.float32(centre_x)
        along = (dx * cos + dy * sin) / np.float32(radius_x)
        across = (dy * cos - dx * sin) / np.float32(radius_y)
        if kind == 0:
            mask = along**2 + across**2 <= 1
        elif kind == 1:
            mask = (np.abs(along) <= 1) & (np.abs(across) <= 1)
        else:
            mask = _triangle_mask(rng, y, x, centre_y, centre_x, max(radius_y, radius_x))
        image[mask] = colour

    texture = _blur(_blur(rng.standard_normal(size=(size, size, 3), dtype=np.float32)))
    texture *= np.float32(rng.uniform(3, 10) / max(float(texture.std()), 1e-6))
    return np.clip(np.rint(image + texture), 0, 255).astype(np.uint8)


def _triangle_mask(
    rng: np.random.Generator, y: np.ndarray, x: np.ndarray, centre_y: float, centre_x: float, radius: float
) -> np.ndarray:
    """Pixels inside a triangle of three jittered corners around the centre."""
    angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(-0.4, 0.4, size=3)
    lengths = radius * rng.uniform(0.6, 1.0, size=3)
    corners = np.stack([centre_y + lengths * np.sin(angles), centre_x + lengths * np.cos(angles)], axis=1)
    corners = corners.astype(np.float32)
    sides = np.stack(
        [
            (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)  # which side of the edge (y0, x0) → (y1, x1)
            for (y0, x0), (y1, x1) in zip(corners, np.roll(corners, -1, axis=0), strict=True)
        ]
    )
    return (sides >= 0).all(axis=0) | (sides <= 0).all(axis=0)


def _blur(noise: np.ndarray) -> np.ndarray:
    """A [1, 2, 1] / 4 blur along both image axes, edges repeated."""
    padded = np.pad(noise, [(1, 1), (0, 0), (0, 0)], mode="edge")
    noise = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    padded = np.pad(noise, [(0, 0), (1, 1), (0, 0)], mode="edge")
    return (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4


def _rng(seed: int, index: int) -> np.random.Generator:
    """The generator for pool image ``index``: independent of the set's count and offset."""
    return np.random.default_rng([seed % 2**64, index])


def _synthetic_pool_image(seed: int, size: int, index: int) -> np.ndarray:
    return synthetic_image(_rng(seed, index), size)


def _synthetic_description(count: int, size: int, seed: int, offset: int) -> str:
    return f"synthetic: {count} generated images (seed {seed}), {size} px"


# --- builtin photographs ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Photo:
    library: str
    name: str
    image: Any  # PIL.Image.Image, RGB


def _photos(log: logging.Logger) -> list[_Photo]:
    """The bundled photographs that load; one that fails is logged and left out."""
    photos = []
    for library, name in _PHOTOS:
        try:
            photos.append(_Photo(library, name, _load_photo(library, name)))
        except Exception as error:  # any failure of a third-party loader only costs one photo
            log.warning(f"builtin images: skipping {library} photograph {name!r}: {type(error).__name__}: {error}")
    return photos


@functools.cache
def _load_photo(library: str, name: str) -> Any:
    """One bundled photograph as an RGB PIL image, loaded once per process."""
    from PIL import Image

    if library == "scikit-image":
        import skimage.data

        array = getattr(skimage.data, name)()
        if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
            array = array[0]
    elif library == "scikit-learn":
        array = _sklearn_sample_images()[name]
    else:
        raise ValueError(f"unknown library {library!r}")
    return Image.fromarray(_rgb_uint8(np.asarray(array)))


@functools.cache
def _sklearn_sample_images() -> dict[str, np.ndarray]:
    """The JPEG files behind ``sklearn.datasets.load_sample_images``, read from the installed
    package without importing scikit-learn (a second of start-up)."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-learn is not installed")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "images"
    images = {}
    for name in SKLEARN_PHOTOS:
        with Image.open(folder / name) as image:
            images[name] = np.asarray(image.convert("RGB"))
    return images


def _rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Grey repeated to RGB, RGBA composited on white."""
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 4:
        alpha = array[..., 3:].astype(np.float32) / 255
        return np.rint(array[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 3:
        return array
    raise ValueError(f"expected a grey, RGB or RGBA image, got shape {array.shape}")


def _builtin_pool_image(photos: list[_Photo], seed: int, size: int, index: int) -> np.ndarray:
    rng = _rng(seed, index)
    if not photos or index % _SYNTHETIC_EVERY == _SYNTHETIC_EVERY - 1:
        return synthetic_image(rng, size)
    return _random_crop(photos[_photo_number(index) % len(photos)].image, rng, size)


def _photo_number(index: int) -> int:
    """How many photo crops come before pool image ``index``."""
    return index // _SYNTHETIC_EVERY * (_SYNTHETIC_EVERY - 1) + index % _SYNTHETIC_EVERY


def _random_crop(photo: Any, rng: np.random.Generator, size: int) -> np.ndarray:
    """A square of 35–100 % of the shorter side, anywhere, maybe mirrored, resized to ``size``."""
    from PIL import Image

    width, height = photo.size
    side = rng.uniform(0.35, 1.0) * min(width, height)
    left = rng.uniform(0, width - side)
    top = rng.uniform(0, height - side)
    mirror = rng.random() < 0.5
    crop = photo.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    array = np.asarray(crop)
    return np.ascontiguousarray(array[:, ::-1]) if mirror else array


def _builtin_description(photos: list[_Photo], count: int, size: int, seed: int, offset: int) -> str:
    if not photos:
        return f"builtin: no bundled photograph could be loaded, so {count} synthetic only, {size} px"
    indices = range(offset, offset + count)
    photo_numbers = [_photo_number(i) for i in indices if i % _SYNTHETIC_EVERY != _SYNTHETIC_EVERY - 1]
    used = [photos[number % len(photos)] for number in photo_numbers]
    names = {(photo.library, photo.name) for photo in used}
    libraries = ", ".join(dict.fromkeys(photo.library for photo in used))
    return (
        f"builtin: {len(photo_numbers)} crops of {len(names)} photograph{'s' * (len(names) != 1)} "
        f"({libraries}) + {count - len(photo_numbers)} synthetic, {size} px"
    )


def _generated_set(
    source: str,
    count: int,
    size: int,
    seed: int,
    offset: int,
    pool_image: Callable[[int, int, int], np.ndarray],
    describe: Callable[[int, int, int, int], str],
) -> ImageSet:
    def images(start: int, stop: int) -> np.ndarray:
        return np.stack([pool_image(seed, size, offset + i) for i in range(start, stop)])

    digest = hashlib.sha256(f"esq.imagesets {source} size={size} offset={offset} count={count} seed={seed}\n".encode())
    for start in range(0, count, _CHUNK):
        digest.update(images(start, min(start + _CHUNK, count)).tobytes())
    description = describe(count, size, seed, offset) + (f", from pool image {offset}" if offset else "")
    return ImageSet(source, count, size, digest.hexdigest(), description, images)


# --- folders ----------------------------------------------------------------------------------


def _image_files(folder: Path) -> list[tuple[str, Path]]:
    """``(relative POSIX path, path)`` of every image file under ``folder``, sorted by the former."""
    files = [
        (path.relative_to(folder).as_posix(), path)
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    ]
    return sorted(files)


def _usable(
    files: list[tuple[str, Path]], wanted: int, on_unreadable: str, log: logging.Logger, size: int
) -> Iterator[tuple[str, Path]]:
    """The files that decode whole (as the run will decode them: PIL reads lazily, so a header
    that opens says nothing of a truncated body), in order, until ``wanted`` of them are found."""
    found = 0
    for relative, path in files:
        if found == wanted:
            return
        try:
            _decode(path, size)
        except DataError as error:
            if on_unreadable == "stop":
                raise DataError(f'{error}; or set on_unreadable = "skip"') from None
            log.warning(f"skipping unreadable image: {error}")
            continue
        found += 1
        yield relative, path


def _folder_set(source: str, count: int, size: int, offset: int, on_unreadable: str, log: logging.Logger) -> ImageSet:
    folder = Path(source).expanduser()
    if not folder.exists():
        raise DataError(f"image folder {source} does not exist; give an existing folder, 'builtin' or 'synthetic'")
    if not folder.is_dir():
        raise DataError(f"image source {source} is not a folder; give a folder of images, 'builtin' or 'synthetic'")
    files = _image_files(folder)
    if not files:
        raise DataError(
            f"no image files in {source} (read recursively: {', '.join(IMAGE_EXTENSIONS)}); "
            "add images or give another folder"
        )
    wanted = offset + count
    usable = list(_usable(files, wanted, on_unreadable, log, size))
    if len(usable) < wanted:
        skipped = len(files) - len(usable)
        unreadable = f" ({skipped} unreadable skipped)" if skipped else ""
        raise DataError(
            f"image folder {source} has {len(usable)} usable images{unreadable}, {wanted} needed "
            f"(offset {offset} + count {count}); lower n_reference/n_evaluation or add images"
        )
    chosen = usable[offset:]

    digest = hashlib.sha256(f"esq.imagesets folder size={size} offset={offset} count={count}\n".encode())
    for relative, path in chosen:
        with open(path, "rb") as handle:
            content = hashlib.file_digest(handle, "sha256").hexdigest()
        digest.update(os.fsencode(relative) + f"\0{content}\n".encode())  # a name that is not UTF-8: its bytes

    def images(start: int, stop: int) -> np.ndarray:
        return np.stack([_decode(path, size) for _, path in chosen[start:stop]])

    description = (
        f"folder {source}: images {offset}–{offset + count - 1} of {len(files)} image files, "
        f"shorter side resized to {size} px and centre-cropped"
    )
    return ImageSet(source, count, size, digest.hexdigest(), description, images)


def _decode(path: Path, size: int) -> np.ndarray:
    """One file as ``uint8 (size, size, 3)``: RGB, shorter side resized to ``size``, centre crop."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as opened:
            opened.draft(None, (2 * size, 2 * size))  # JPEG: decode at a reduced scale, at least 2× size
            opened.load()  # the whole body now: a truncated file fails here, naming it
            image = _rgb(ImageOps.exif_transpose(opened))
    except DataError as error:
        raise DataError(f"cannot use image {path}: {error}; convert it to 8-bit RGB, or remove it") from None
    except Exception as error:  # a decoder can fail in many ways; each names this file
        raise DataError(
            f"cannot decode image {path}: {type(error).__name__}: {error}; replace or remove the file"
        ) from None
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box))


def _rgb(image: Any) -> Any:
    """RGB 8-bit: 16-bit grey scaled down, float grey in [0, 1] or [0, 255] scaled to 0..255
    (other float ranges are a ``DataError``: no scale can be guessed), transparency composited on
    white, palette, CMYK and the rest through PIL's conversion."""
    from PIL import Image

    if image.mode.startswith("I"):  # 16-bit grey (PIL opens it as I;16 or I): 0..65535 → 0..255
        grey = np.asarray(image, dtype=np.float64)
        if grey.size and not (grey.min() >= 0 and grey.max() <= 65535):
            raise DataError(
                f"integer pixels in [{grey.min():.0f}, {grey.max():.0f}]; esq reads 8- and 16-bit images "
                "(0..65535): save it as such"
            )
        image = Image.fromarray(np.clip(np.rint(grey / 257), 0, 255).astype(np.uint8))
    elif image.mode == "F":  # 32-bit float grey: PIL's own conversion would clip 0..1 to black
        grey = np.asarray(image, dtype=np.float64)
        low, high = (float(grey.min()), float(grey.max())) if np.isfinite(grey).all() else (np.nan, np.nan)
        if not (low >= 0 and high <= 255):
            raise DataError(f"float pixels in [{low:.4g}, {high:.4g}]; esq reads float images in [0, 1] or [0, 255]")
        scale = 255.0 if high <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.rint(grey * scale), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
