"""Segmentation datasets for the training pipelines: images with a class id per pixel.

``open_segmentation(dataset, ...)`` gives one split (``"train"``, ``"val"`` or ``"test"``) of a
dataset as a ``SegmentationDataset``: item ``i`` is ``(image, mask)``, the image ``uint8
(3, S, S)`` RGB and the mask ``int64 (S, S)`` class ids, ``S = image_size``. Mask value
``ignore_index`` (255) marks pixels that no loss or metric counts. ``settings()`` is a plain dict
that ``open_segmentation(**settings)`` turns back into the same data; checkpoints store it.

Datasets:

- ``"synthetic"`` (the default; no files needed): ``synthetic_size`` generated images, each a
  smooth colour gradient with stripes and noise, and 1–4 filled shapes in random colours, sizes
  and places, later ones on top. Class ids: 0 background, 1 disc, 2 square, 3 triangle. Image
  ``i`` depends only on ``seed``, ``image_size`` and ``i``, never on the split or subset.
- ``"folder"``: ``data_path/images/<stem>.{jpg,jpeg,png,bmp,tif,tiff}`` with
  ``data_path/masks/<stem>.png``; a mask's pixel values (greyscale or palette index) are the class
  ids ``0 .. num_classes - 1``, and 255 is ignored. ``num_classes`` is required; the classes are
  named ``class_0``, ``class_1``, … unless ``data_path/classes.txt`` holds one name per line.
- ``"oxford_pet"``: Oxford-IIIT Pet, read from torchvision's layout under ``data_path`` and never
  downloaded. Its trimaps (1 pet, 2 background, 3 border) become class ids 0 background, 1 pet,
  2 border. The tools before esq fed the raw trimap values 1–3 to a 21-class head, so their
  class ids (and checkpoints) do not match these.

Splits: ``"synthetic"`` and ``"folder"`` shuffle all items by ``seed`` and take ``test_fraction``
of them for test, then ``val_fraction`` for val (at least one each once there are 3 items), the
rest for train. ``"oxford_pet"`` takes test from ``annotations/test.txt`` and splits
``annotations/trainval.txt`` into train and val by ``seed`` and ``val_fraction``.
``subset_size`` keeps that many items of the split, chosen by ``seed``. Images are resized to
``S × S`` (aspect ratio not kept) bilinearly with antialiasing, masks with nearest neighbour.

>>> train = open_segmentation("synthetic", image_size=32, synthetic_size=20, seed=1)
>>> image, mask = train[0]
>>> image.shape, image.dtype, mask.shape, mask.dtype
(torch.Size([3, 32, 32]), torch.uint8, torch.Size([32, 32]), torch.int64)
>>> train.class_names, len(train)
(['background', 'disc', 'square', 'triangle'], 16)
>>> again = open_segmentation(**train.settings())
>>> bool((again[0][1] == mask).all())
True
"""

from __future__ import annotations

import math
import operator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from esq import ConfigError, DataError, UnknownNameError, did_you_mean
from esq.builtin.data.image_sets import IMAGE_EXTENSIONS, _rgb

DATASETS = ("synthetic", "folder", "oxford_pet")
SPLITS = ("train", "val", "test")
IGNORE_INDEX = 255
SYNTHETIC_CLASSES = ["background", "disc", "square", "triangle"]
OXFORD_PET_CLASSES = ["background", "pet", "border"]

# Extra seed words, so that the split and subset shuffles draw from streams of their own, apart
# from the per-image generators ``default_rng([seed, i])``.
_SPLIT_STREAM = (0x5E6, 1)
_SUBSET_STREAM = (0x5E6, 2)
# The synthetic classes' colour families (disc red, square green, triangle blue) and how far
# each image's shade strays from them; the background is a near-grey gradient apart from all three.
_CLASS_COLOURS = np.array([[205, 55, 45], [55, 175, 65], [60, 80, 210]], dtype=np.float32)
_COLOUR_JITTER = 30
_BACKGROUND_GREY = (70, 180)
_BACKGROUND_TINT = 12
# Oxford-IIIT Pet trimap value → class id; -1 marks a value a trimap should not hold.
_TRIMAP_TO_CLASS = np.array([-1, 1, 0, 2], dtype=np.int64)
_OXFORD_LAYOUT = (
    "expected layout (torchvision's OxfordIIITPet; esq never downloads it):\n"
    "  {root}/\n"
    "    oxford-iiit-pet/\n"
    "      images/<name>.jpg\n"
    "      annotations/trainval.txt  (first column: image name)\n"
    "      annotations/test.txt\n"
    "      annotations/trimaps/<name>.png"
)


class SegmentationDataset(torch.utils.data.Dataset):
    """One split of a segmentation dataset: ``(image uint8 (3, S, S), mask int64 (S, S))`` items.

    ``indices`` are the split's items as positions in the whole dataset (its "pool"), so two
    splits of one dataset never share an index. Build one with ``open_segmentation``.

    >>> data = open_segmentation(image_size=16, synthetic_size=10, split="val")
    >>> data.name, data.num_classes, data.ignore_index, data.indices
    ('synthetic', 4, 255, (2,))
    """

    name: str
    ignore_index: int = IGNORE_INDEX

    def __init__(self, *, class_names: list[str], indices: tuple[int, ...], settings: dict[str, Any]) -> None:
        self.class_names = list(class_names)
        self.indices = tuple(indices)
        self.image_size: int = settings["image_size"]
        self.split: str = settings["split"]
        self._settings = dict(settings)

    @property
    def num_classes(self) -> int:
        """How many class ids the masks use: ``len(class_names)``."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        position = operator.index(index)
        if position < 0:
            position += len(self.indices)
        if not 0 <= position < len(self.indices):
            raise IndexError(f"item {index} is out of range for a split of {len(self.indices)} items")
        image, mask = self._read(self.indices[position])
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(mask.astype(np.int64))

    def settings(self) -> dict[str, Any]:
        """The options that rebuild this data: ``open_segmentation(**dataset.settings())``."""
        return dict(self._settings)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, items={len(self)}, "
            f"image_size={self.image_size}, num_classes={self.num_classes})"
        )

    def _read(self, pool_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pool item ``pool_index`` as ``uint8 (S, S, 3)`` and class ids ``(S, S)``."""
        raise NotImplementedError

    def _labels(self, pool_index: int) -> np.ndarray:
        """Pool item ``pool_index``'s class ids at the mask's own size, checked."""
        raise NotImplementedError


def open_segmentation(
    dataset: str = "synthetic",
    *,
    data_path: str | None = None,
    image_size: int = 64,
    seed: int = 0,
    num_classes: int | None = None,
    synthetic_size: int = 96,
    split: str = "train",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    subset_size: int | None = None,
) -> SegmentationDataset:
    """The ``split`` of ``dataset`` (``"synthetic"``, ``"folder"`` or ``"oxford_pet"``); see the
    module docstring for what each reads and how splits are drawn.

    >>> test = open_segmentation("synthetic", synthetic_size=30, split="test", seed=2)
    >>> train = open_segmentation("synthetic", synthetic_size=30, split="train", seed=2)
    >>> len(test), len(train), set(test.indices) & set(train.indices)
    (3, 24, set())
    """
    if not isinstance(dataset, str) or dataset not in DATASETS:
        choices = ", ".join(repr(name) for name in DATASETS)
        raise UnknownNameError(
            f"unknown dataset {dataset!r}{did_you_mean(str(dataset), DATASETS)}; choose one of {choices}"
        )
    _check_int("image_size", image_size, least=8)
    _check_int("seed", seed)
    _check_int("synthetic_size", synthetic_size, least=1)
    if subset_size is not None:
        _check_int("subset_size", subset_size, least=1)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}{did_you_mean(str(split), SPLITS)}; choose 'train', 'val' or 'test'")
    for option, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ConfigError(f"{option} must be a number in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"val_fraction + test_fraction must be below 1 so that train keeps items, got "
            f"{val_fraction} + {test_fraction}; lower one of them"
        )
    if data_path is not None and not isinstance(data_path, str | Path):
        raise ConfigError(f"data_path must be a folder path, got {data_path!r}")
    settings: dict[str, Any] = {
        "dataset": dataset,
        "data_path": None if data_path is None else str(data_path),
        "image_size": image_size,
        "seed": seed,
        "num_classes": num_classes,
        "synthetic_size": synthetic_size,
        "split": split,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "subset_size": subset_size,
    }
    if dataset == "synthetic":
        return _open_synthetic(settings)
    if dataset == "folder":
        return _open_folder(settings)
    return _open_oxford_pet(settings)


def check_masks(dataset: SegmentationDataset) -> None:
    """Read every mask of ``dataset`` and raise ``DataError`` on the first one with a label the
    dataset cannot use (for a folder: one ≥ ``num_classes`` other than 255). Reading an item
    checks its own mask anyway; this finds a bad one before training starts.

    >>> check_masks(open_segmentation(image_size=16, synthetic_size=4))
    """
    for pool_index in dataset.indices:
        dataset._labels(pool_index)


def segmentation_loader(
    dataset: SegmentationDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """Batches of ``dataset`` as ``(images uint8 (N, 3, S, S), masks int64 (N, S, S))``; a
    shuffled loader draws its order from ``seed``, so two loaders with one seed agree.

    >>> loader = segmentation_loader(open_segmentation(image_size=16, synthetic_size=10), 4)
    >>> images, masks = next(iter(loader))
    >>> images.shape, masks.shape
    (torch.Size([4, 3, 16, 16]), torch.Size([4, 16, 16]))
    """
    _check_int("batch_size", batch_size, least=1)
    _check_int("num_workers", num_workers, least=0)
    _check_int("seed", seed)
    generator = torch.Generator().manual_seed(seed % 2**63) if shuffle else None
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        drop_last=drop_last,
    )


# --- splits -----------------------------------------------------------------------------------


def _check_int(option: str, value: Any, least: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (least is not None and value < least):
        bound = f" ≥ {least}" if least is not None else ""
        raise ConfigError(f"{option} must be an integer{bound}, got {value!r}")


def _share(fraction: float, count: int) -> int:
    """Items a split with ``fraction`` gets: rounded half up, at least one once there are 3."""
    items = math.floor(fraction * count + 0.5)
    return max(items, 1) if fraction > 0 and count >= 3 else items


def _split_pool(count: int, seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """Pool indices ``0 .. count - 1`` shuffled by ``seed`` into test, val and train (sorted)."""
    test_items, val_items = _share(test_fraction, count), _share(val_fraction, count)
    room = count - 1  # train keeps at least one item: val gives way first, then test
    if test_items + val_items > room:
        least = 1 if val_fraction > 0 and count >= 3 else 0
        val_items = max(min(val_items, room - test_items), least)
        test_items = min(test_items, room - val_items)
    order = np.random.default_rng([seed % 2**64, *_SPLIT_STREAM]).permutation(count).tolist()
    return {
        "test": sorted(order[:test_items]),
        "val": sorted(order[test_items : test_items + val_items]),
        "train": sorted(order[test_items + val_items :]),
    }


def _choose(parts: dict[str, list[int]], settings: dict[str, Any], source: str) -> tuple[int, ...]:
    """The requested split, cut to ``subset_size``; an empty split is an error."""
    split = settings["split"]
    indices = parts[split]
    if not indices:
        counts = ", ".join(f"{name} {len(parts[name])}" for name in SPLITS)
        fix = (
            "lower val_fraction or test_fraction"
            if split == "train"
            else f"add items (3 or more give each split one) or raise {split}_fraction"
        )
        if settings["dataset"] == "oxford_pet":
            fix = "restore the annotation lists" if split == "test" else "raise val_fraction"
        raise DataError(f"the {split} split of {source} is empty ({counts}); {fix}")
    subset_size = settings["subset_size"]
    if subset_size is not None and subset_size < len(indices):
        order = np.random.default_rng([settings["seed"] % 2**64, *_SUBSET_STREAM]).permutation(len(indices))
        indices = sorted(indices[i] for i in order[:subset_size])
    return tuple(indices)


def _check_num_classes(settings: dict[str, Any], expected: int) -> None:
    given = settings["num_classes"]
    if given is not None and given != expected:
        raise ConfigError(
            f"num_classes is {given!r} but dataset {settings['dataset']!r} has {expected} classes; "
            f"set num_classes = {expected} or leave it unset"
        )
    settings["num_classes"] = expected


# --- synthetic --------------------------------------------------------------------------------


class _SyntheticSegmentation(SegmentationDataset):
    name = "synthetic"

    def _read(self, pool_index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self._settings["seed"] % 2**64, pool_index])
        return synthetic_segmentation(rng, self.image_size)

    def _labels(self, pool_index: int) -> np.ndarray:
        return self._read(pool_index)[1]


def _open_synthetic(settings: dict[str, Any]) -> SegmentationDataset:
    if settings["data_path"] is not None:
        raise ConfigError(
            "data_path is set but dataset is 'synthetic', which reads no files; "
            "set dataset = 'folder' or 'oxford_pet', or remove data_path"
        )
    _check_num_classes(settings, len(SYNTHETIC_CLASSES))
    parts = _split_pool(
        settings["synthetic_size"], settings["seed"], settings["val_fraction"], settings["test_fraction"]
    )
    source = f"dataset 'synthetic' ({settings['synthetic_size']} images, synthetic_size)"
    indices = _choose(parts, settings, source)
    return _SyntheticSegmentation(class_names=SYNTHETIC_CLASSES, indices=indices, settings=settings)


def synthetic_segmentation(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A generated image ``uint8 (size, size, 3)`` and its class ids ``uint8 (size, size)``:
    a near-grey gradient with fine noise (class 0) under 3–4 shapes, later ones on top: discs (1)
    red and striped, squares (2) green and checkered, triangles (3) blue and dotted, each of
    random size, place, rotation, shade and texture orientation. The first three shapes are one
    of each class, so every class is drawn in every image (a later shape may cover part of one).
    The same generator state gives the same pair.

    Each class differs from the others in colour and texture, not only in outline, so that a
    frozen random-init CNN with a receptive field of a few pixels (``tiny_cnn``'s is 17) gives
    features a small head separates pixel by pixel.

    >>> image, mask = synthetic_segmentation(np.random.default_rng(0), 24)
    >>> image.shape, mask.shape, sorted(np.unique(mask).tolist())
    ((24, 24, 3), (24, 24), [0, 1, 2, 3])
    """
    centres = ((np.arange(size) + 0.5) / size).astype(np.float32)
    y, x = centres[:, None], centres[None, :]
    grey = rng.uniform(*_BACKGROUND_GREY, size=(2, 2)).astype(np.float32)
    top = grey[0, 0] + (grey[0, 1] - grey[0, 0]) * x
    bottom = grey[1, 0] + (grey[1, 1] - grey[1, 0]) * x
    tint = rng.uniform(-_BACKGROUND_TINT, _BACKGROUND_TINT, size=3).astype(np.float32)
    image = (top + (bottom - top) * y)[..., None] + tint

    mask = np.zeros((size, size), dtype=np.uint8)
    shapes = len(SYNTHETIC_CLASSES) - 1
    class_ids = [*(rng.permutation(shapes) + 1), *rng.integers(1, shapes + 1, size=rng.integers(0, 2))]
    for class_id in map(int, class_ids):
        centre_y, centre_x = rng.uniform(0.2, 0.8, size=2)
        radius = rng.uniform(0.1, 0.2)
        angle = rng.uniform(0, 2 * np.pi)
        inside = _shape(class_id, y - np.float32(centre_y), x - np.float32(centre_x), radius, angle)
        image[inside] = _class_colour(rng, class_id) + _texture(rng, class_id, y, x, size)[inside][:, None]
        mask[inside] = class_id

    image += rng.standard_normal(size=image.shape, dtype=np.float32) * np.float32(rng.uniform(2, 8))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def _class_colour(rng: np.random.Generator, class_id: int) -> np.ndarray:
    """Class ``class_id``'s colour family (red, green, blue), each channel shifted by up to ±30."""
    jitter = rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, size=3).astype(np.float32)
    return _CLASS_COLOURS[class_id - 1] + jitter


def _texture(rng: np.random.Generator, class_id: int, y: np.ndarray, x: np.ndarray, size: int) -> np.ndarray:
    """A ``(size, size)`` texture in ±amplitude, at a random orientation: stripes of a 4-pixel
    period (disc), a checker of 3-pixel cells (square) or dots every 6 pixels (triangle). Periods
    are in pixels, so the texture is as fine at every ``size`` as the backbone sees it."""
    angle = rng.uniform(0, np.pi)
    amplitude = np.float32(rng.uniform(25, 40))
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    along = (x * cos + y * sin) * np.float32(size)
    across = (y * cos - x * sin) * np.float32(size)
    if class_id == 1:
        return np.sin(along * np.float32(2 * np.pi / 4)) * amplitude
    if class_id == 2:
        on = (np.floor(along / 3) + np.floor(across / 3)) % 2 == 0
    else:
        on = (np.mod(along, 6) - 3) ** 2 + (np.mod(across, 6) - 3) ** 2 <= 2.5
    return np.where(on, amplitude, -amplitude)


def _shape(class_id: int, dy: np.ndarray, dx: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Pixels inside a disc, square or triangle around offset (0, 0); all three have the area of
    a disc of ``radius``, so only their outline tells them apart."""
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    if class_id == 1:
        return dx**2 + dy**2 <= np.float32(radius**2)
    if class_id == 2:
        half_side = np.float32(radius * math.sqrt(math.pi) / 2)
        return np.maximum(np.abs(dx * cos + dy * sin), np.abs(dy * cos - dx * sin)) <= half_side
    # An equilateral triangle: inside when the offset reaches no further than the inradius
    # (half the circumradius) beyond the centre away from each corner.
    circumradius = radius * math.sqrt(4 * math.pi / (3 * math.sqrt(3)))
    inside = np.ones(np.broadcast_shapes(dy.shape, dx.shape), dtype=bool)
    for corner in range(3):
        towards = angle + corner * 2 * math.pi / 3
        inside &= dx * np.float32(math.cos(towards)) + dy * np.float32(math.sin(towards)) >= np.float32(
            -circumradius / 2
        )
    return inside


# --- files: folder and Oxford-IIIT Pet --------------------------------------------------------


class _PairedFiles(SegmentationDataset):
    """Items read from ``(image file, mask file)`` pairs; ``pairs[i]`` is pool item ``i``."""

    def __init__(self, *, pairs: list[tuple[Path, Path]], **rest: Any) -> None:
        super().__init__(**rest)
        self.pairs = pairs

    def _read(self, pool_index: int) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        image_path, mask_path = self.pairs[pool_index]
        labels = self._labels(pool_index)
        size = self.image_size
        try:
            with Image.open(image_path) as opened:
                if opened.size != (labels.shape[1], labels.shape[0]):
                    raise DataError(
                        f"image {image_path} is {opened.size[0]}×{opened.size[1]} but its mask {mask_path} is "
                        f"{labels.shape[1]}×{labels.shape[0]}; give the mask the image's size"
                    )
                opened.draft(None, (2 * size, 2 * size))  # JPEG: decode at a reduced scale, at least 2× size
                try:
                    image = _rgb(opened)
                except DataError as error:  # what the pixels are; this says which file holds them
                    raise DataError(f"image {image_path}: {error}; convert or remove the file") from None
        except DataError:
            raise
        except Exception as error:  # a decoder can fail in many ways; each names this file
            raise DataError(
                f"cannot read image {image_path}: {type(error).__name__}: {error}; replace or remove the file"
            ) from error
        resized = image.resize((size, size), Image.Resampling.BILINEAR)  # PIL antialiases when shrinking
        return np.asarray(resized), _nearest(labels, size)

    def _labels(self, pool_index: int) -> np.ndarray:
        path = self.pairs[pool_index][1]
        return self._class_ids(_read_label_image(path), path)

    def _class_ids(self, values: np.ndarray, path: Path) -> np.ndarray:
        raise NotImplementedError


class _FolderSegmentation(_PairedFiles):
    name = "folder"

    def _class_ids(self, values: np.ndarray, path: Path) -> np.ndarray:
        bad = (values < 0) | ((values >= self.num_classes) & (values != IGNORE_INDEX))
        if bad.any():
            label, highest = int(values[bad].min()), int(values[bad].max())
            fix = (
                f"raise num_classes to {highest + 1} or fix the mask"
                if self.num_classes <= highest < IGNORE_INDEX
                else f"fix the mask (class ids are 0–{IGNORE_INDEX - 1}, {IGNORE_INDEX} marks ignored pixels)"
            )
            raise DataError(f"mask {path} has label {label} but num_classes is {self.num_classes}; {fix}")
        return values


class _OxfordPetSegmentation(_PairedFiles):
    name = "oxford_pet"

    def _class_ids(self, values: np.ndarray, path: Path) -> np.ndarray:
        bad = (values < 1) | (values > 3)
        if bad.any():
            raise DataError(
                f"trimap {path} has value {int(values[bad].min())}, but Oxford-IIIT Pet trimaps hold only "
                "1 (pet), 2 (background) and 3 (border); extract annotations.tar.gz again"
            )
        return _TRIMAP_TO_CLASS[values]


def _read_label_image(path: Path) -> np.ndarray:
    """A mask file's pixel values as ``int64 (h, w)``: grey levels, or palette indices."""
    from PIL import Image

    try:
        with Image.open(path) as mask:
            if not (mask.mode in ("1", "L", "P") or mask.mode.startswith("I")):
                raise DataError(
                    f"mask {path} is a {mask.mode} image; save masks as greyscale or palette PNGs "
                    "whose pixel values are class ids"
                )
            return np.asarray(mask).astype(np.int64)
    except DataError:
        raise
    except Exception as error:  # a decoder can fail in many ways; each names this file
        raise DataError(f"cannot read mask {path}: {type(error).__name__}: {error}; replace or remove it") from error


def _read_text(path: Path) -> str:
    """A text file of names, in UTF-8 (a byte-order mark is allowed), or a ``DataError`` saying
    where its first byte that is not UTF-8 lies."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not UTF-8 text: byte 0x{data[error.start]:02x} at line {line} (offset {error.start}); "
            "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _nearest(labels: np.ndarray, size: int) -> np.ndarray:
    """``labels`` resized to ``size × size`` by nearest neighbour (pixel centres, as PIL does)."""
    rows = ((np.arange(size) + 0.5) * labels.shape[0] / size).astype(np.int64)
    columns = ((np.arange(size) + 0.5) * labels.shape[1] / size).astype(np.int64)
    return labels[rows[:, None], columns[None, :]]


def _data_folder(settings: dict[str, Any], layout: str) -> Path:
    if settings["data_path"] is None:
        raise ConfigError(f"dataset {settings['dataset']!r} needs data_path: {layout}")
    folder = Path(settings["data_path"]).expanduser()
    if not folder.is_dir():
        raise DataError(f"data_path {settings['data_path']} is not a folder; {layout}")
    return folder


def _unmatched(folder: Path, without_mask: list[str], without_image: list[str]) -> DataError:
    def some(stems: list[str]) -> str:
        shown = ", ".join(stems[:3])
        return shown + (f", … ({len(stems) - 3} more)" if len(stems) > 3 else "")

    problems = []
    if without_mask:
        problems.append(f"{len(without_mask)} image(s) without masks/<stem>.png ({some(without_mask)})")
    if without_image:
        problems.append(f"{len(without_image)} mask(s) without an image ({some(without_image)})")
    return DataError(
        f"{folder}: {' and '.join(problems)}; every images/<stem>.<ext> needs masks/<stem>.png and the other "
        "way round: add or remove files"
    )


def _open_folder(settings: dict[str, Any]) -> SegmentationDataset:
    layout = "a folder with images/<stem>.jpg|png|… and masks/<stem>.png (pixel values = class ids)"
    folder = _data_folder(settings, layout)
    names_file = folder / "classes.txt"
    class_names = None
    if names_file.is_file():
        class_names = [line.strip() for line in _read_text(names_file).splitlines() if line.strip()]
    num_classes = settings["num_classes"]
    if num_classes is None:
        hint = f" ({names_file} lists {len(class_names)} names)" if class_names is not None else ""
        raise ConfigError(
            f"dataset 'folder' needs num_classes, the number of class ids its masks use{hint}; set num_classes"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= IGNORE_INDEX:
        raise ConfigError(
            f"num_classes must be an integer from 2 to {IGNORE_INDEX} ({IGNORE_INDEX} marks ignored pixels), "
            f"got {num_classes!r}"
        )
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    elif len(class_names) != num_classes:
        raise DataError(
            f"{names_file} lists {len(class_names)} class names but num_classes is {num_classes}; "
            "make them agree (one name per line)"
        )

    for part in ("images", "masks"):
        if not (folder / part).is_dir():
            raise DataError(f"{folder} has no {part}/ folder; dataset 'folder' reads {layout}")
    images: dict[str, Path] = {}
    for path in sorted((folder / "images").iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file():
            if path.stem in images:
                raise DataError(
                    f"{folder / 'images'} has two images named {path.stem!r} ({images[path.stem].name}, "
                    f"{path.name}); keep one"
                )
            images[path.stem] = path
    masks = {
        path.stem: path
        for path in sorted((folder / "masks").iterdir())
        if path.suffix.lower() == ".png" and not path.name.startswith(".") and path.is_file()
    }
    if not images and not masks:
        raise DataError(f"{folder} has no images or masks; dataset 'folder' reads {layout}")
    without_mask = sorted(images.keys() - masks.keys())
    without_image = sorted(masks.keys() - images.keys())
    if without_mask or without_image:
        raise _unmatched(folder, without_mask, without_image)

    pairs = [(images[stem], masks[stem]) for stem in sorted(images)]
    parts = _split_pool(len(pairs), settings["seed"], settings["val_fraction"], settings["test_fraction"])
    indices = _choose(parts, settings, f"dataset 'folder' at {folder} ({len(pairs)} images)")
    return _FolderSegmentation(pairs=pairs, class_names=class_names, indices=indices, settings=settings)


def _open_oxford_pet(settings: dict[str, Any]) -> SegmentationDataset:
    _check_num_classes(settings, len(OXFORD_PET_CLASSES))
    given = settings["data_path"]
    layout = _OXFORD_LAYOUT.format(root=given if given is not None else "<data_path>")
    if given is None:
        raise ConfigError(f"dataset 'oxford_pet' needs data_path, the folder that holds oxford-iiit-pet/\n{layout}")
    root = Path(given).expanduser()
    folder = root / "oxford-iiit-pet"
    if not folder.is_dir() and root.name == "oxford-iiit-pet" and (root / "annotations").is_dir():
        folder = root  # data_path given as the oxford-iiit-pet folder itself
    annotations = folder / "annotations"
    for needed in (folder / "images", annotations / "trimaps", annotations / "trainval.txt", annotations / "test.txt"):
        if not needed.exists():
            raise DataError(f"Oxford-IIIT Pet: {needed} is missing; put the dataset under data_path\n{layout}")

    lists = {part: _read_name_list(annotations / f"{part}.txt") for part in ("trainval", "test")}
    names = lists["trainval"] + lists["test"]
    pairs = [(folder / "images" / f"{name}.jpg", annotations / "trimaps" / f"{name}.png") for name in names]
    missing = [str(path.relative_to(folder)) for pair in pairs for path in pair if not path.is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f", … ({len(missing) - 3} more)" if len(missing) > 3 else "")
        raise DataError(
            f"Oxford-IIIT Pet at {folder}: {len(missing)} listed file(s) missing ({shown}); "
            f"extract images.tar.gz and annotations.tar.gz again\n{layout}"
        )

    trainval_count = len(lists["trainval"])
    parts = _split_pool(trainval_count, settings["seed"], settings["val_fraction"], 0.0)
    parts["test"] = list(range(trainval_count, len(names)))
    source = f"dataset 'oxford_pet' at {folder} (trainval.txt {trainval_count}, test.txt {len(lists['test'])})"
    indices = _choose(parts, settings, source)
    return _OxfordPetSegmentation(pairs=pairs, class_names=OXFORD_PET_CLASSES, indices=indices, settings=settings)


def _read_name_list(path: Path) -> list[str]:
    """The first column of an Oxford-IIIT Pet list file; ``#`` lines are comments."""
    lines = _read_text(path).splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]
