"""Paired features for ``esq run similarity``: original and quantized, per checkpoint, or from two
files.

From a checkpoint: the frozen backbone's map (``embed``) and the map the head reads after the
checkpoint's quantizer (and adapters), on one split of the data the checkpoint was trained on.
Each map is pooled to vectors: ``gap`` (one per image: the spatial mean) or ``tokens`` (a seeded
subsample of ``tokens_per_image`` positions per image, the same positions in both maps).

From files: ``.npy``, ``.pt``/``.pth`` (a tensor, or a dict holding exactly one) or
``.safetensors`` (exactly one tensor, or the one named ``features``), 2-D, rows paired.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from esq import DataError, as_matrix, check_folder, load_torch_file

FEATURE_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors")
CHECKPOINT_SUFFIXES = (".ckpt", ".pth")


def checkpoint_files(folder: str | Path) -> list[Path]:
    """The ``.ckpt`` and ``.pth`` files in ``folder`` and below it (run folders), by path; a folder
    holding ``best.ckpt`` gives that one and not its ``last.ckpt`` (one model per training run).
    Hidden folders are not searched; linked folders are, each once."""
    folder = check_folder("checkpoints_dir", folder, "a folder of .ckpt or .pth files (or of run folders with them)")
    found, seen = [], set()
    for root, directories, files in os.walk(folder, followlinks=True):  # a run folder linked in is searched
        if os.path.realpath(root) in seen:  # a link to a folder above: once is enough
            directories.clear()
            continue
        seen.add(os.path.realpath(root))
        directories[:] = sorted(name for name in directories if not name.startswith("."))
        names = {name for name in files if Path(name).suffix in CHECKPOINT_SUFFIXES}
        if "best.ckpt" in names:
            names.discard("last.ckpt")
        found.extend(Path(root) / name for name in names if (Path(root) / name).is_file())
    if not found:
        raise DataError(f"checkpoints_dir {folder}: no .ckpt or .pth file in it or in the folders below it")
    return sorted(found)


def run_folder(path: Path) -> Path | None:
    """The run folder of a training run's ``best.ckpt`` / ``last.ckpt`` (``RUN/checkpoints/best.ckpt``
    or ``RUN/best.ckpt``), or ``None`` for a checkpoint named after its model."""
    if path.stem not in ("last", "best"):
        return None
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def model_names(paths: list[Path], root: str | Path | None = None) -> dict[Path, str]:
    """A unique, readable name per checkpoint: a training run's ``best.ckpt`` / ``last.ckpt`` is named
    after its run folder (``runs/squeeze/RUN/checkpoints/best.ckpt`` → ``RUN``), any other file by
    its stem. Where two names are the same: the folder's path relative to ``root`` (``a/RUN``,
    ``b/RUN``), then the suffix, then the whole relative path.

    >>> list(model_names([Path("m/a.ckpt"), Path("m/a.pth"), Path("m/b.ckpt")]).values())
    ['a.ckpt', 'a.pth', 'b']
    >>> list(model_names([Path("m/x/r/checkpoints/best.ckpt"), Path("m/y/r/best.ckpt")], "m").values())
    ['x/r', 'y/r']
    """

    def relative(path: Path) -> Path:
        try:
            return path.relative_to(root) if root is not None else path
        except ValueError:
            return path

    def folder_path(path: Path, name: str) -> str:
        run = run_folder(path)
        return printable((relative(run) if run is not None else relative(path).with_suffix("")).as_posix())

    candidates = (
        folder_path,
        lambda path, name: f"{name}{path.suffix}",
        lambda path, name: printable(relative(path).as_posix()),
    )
    names = {path: printable(_run_or_stem(path)) for path in paths}
    for name, count in Counter(names.values()).items():
        if count == 1:
            continue
        group = [path for path in paths if names[path] == name]
        for candidate in candidates:  # the first way that tells this group's files apart
            renamed = {path: candidate(path, name) for path in group}
            if len(set(renamed.values())) == len(group):
                names.update(renamed)
                break
    if len(set(names.values())) != len(names):  # a new name equal to another one's: the file paths
        names = {path: printable(relative(path).as_posix()) for path in paths}
    return names


def _run_or_stem(path: Path) -> str:
    """A checkpoint's short name: its run folder's (``.`` as the folder it is) or its stem."""
    run = run_folder(path)
    return Path(os.path.abspath(run)).name if run is not None else path.stem


def printable(name: str) -> str:
    """``name`` with the bytes of a file name that is not UTF-8 (``os.fsdecode``'s surrogates) as
    ``\\xff``, so that logs, tables and charts can show it.

    >>> printable("bad\\udcffname")
    'bad\\\\xffname'
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def feature_file(path: str | Path, option: str) -> Path:
    """``path`` if it is a file, or a ``DataError`` naming it and the option that gave it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{option} {path}: no such file")
    return path


NPY_MAGIC = b"\x93NUMPY"


def read_features(path: str | Path, option: str) -> np.ndarray:
    """A 2-D float array from a features file, or a ``DataError`` naming the file and option."""
    path = feature_file(path, option)
    if path.suffix not in FEATURE_SUFFIXES:
        raise DataError(f"{option} {path}: unknown format; use {', '.join(FEATURE_SUFFIXES)}")
    try:
        if path.suffix == ".npy":
            with open(path, "rb") as handle:
                if handle.read(6) != NPY_MAGIC:
                    raise DataError(f"{option} {path}: not a .npy file; save the features with numpy.save")
            array = np.load(path, allow_pickle=False)
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = load_file(path)
            array = tensors.get("features", next(iter(tensors.values())) if len(tensors) == 1 else None)
            if array is None:
                raise DataError(
                    f"{option} {path}: holds {len(tensors)} tensors ({', '.join(sorted(tensors)[:5])}); "
                    "store one, or name it 'features'"
                )
        else:
            import torch

            loaded = load_torch_file(path, f"{option} {path}", error=DataError)
            if isinstance(loaded, dict):
                tensors = [value for value in loaded.values() if torch.is_tensor(value)]
                if len(tensors) != 1:
                    raise DataError(f"{option} {path}: a dict with {len(tensors)} tensors; store exactly one")
                loaded = tensors[0]
            if not torch.is_tensor(loaded):
                raise DataError(f"{option} {path}: holds a {type(loaded).__name__}, not a tensor")
            loaded = loaded.detach().cpu()
            if loaded.layout != torch.strided:  # a sparse tensor: its values, in place
                loaded = loaded.to_dense()
            array = loaded.numpy() if loaded.is_complex() else loaded.float().numpy()  # as_matrix refuses complex
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{option} {path}: cannot read it ({type(error).__name__}: {error})") from None
    if getattr(array, "ndim", None) != 2:
        shape = getattr(array, "shape", None)
        raise DataError(f"{option} {path}: expected a 2-D (samples, features) array, got shape {shape}")
    try:
        as_matrix(option, array)
    except DataError as error:
        raise DataError(f"{option} {path}: {str(error).replace(f'argument `{option}` ', '')}") from None
    return array


def read_pair(features_a: str | Path, features_b: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Both feature files, checked (real, finite, 2-D) and paired (as many rows in each)."""
    x, y = read_features(features_a, "features_a"), read_features(features_b, "features_b")
    if len(x) != len(y):
        raise DataError(
            f"features_a {features_a} has {len(x)} rows but features_b {features_b} has {len(y)}; "
            "the rows are paired: give the same samples in the same order"
        )
    return x, y


def pool_pair(original: Any, squeezed: Any, pooling: str, tokens_per_image: int, generator: Any) -> tuple[Any, Any]:
    """``(N, C, h, w)`` maps → paired ``(N, C)`` (gap) or ``(N·t, C)`` (tokens) rows."""
    import torch

    if pooling == "gap":
        return original.mean(dim=(2, 3)), squeezed.mean(dim=(2, 3))
    count, channels = original.shape[:2]
    positions = original.shape[2] * original.shape[3]
    taken = min(tokens_per_image, positions)
    chosen = torch.stack([torch.randperm(positions, generator=generator)[:taken] for _ in range(count)])
    index = chosen.to(original.device).unsqueeze(1).expand(count, channels, taken)

    def gather(maps: Any) -> Any:
        return maps.flatten(2).gather(2, index).transpose(1, 2).reshape(count * taken, channels)

    return gather(original), gather(squeezed)


def checkpoint_features(
    model: Any,
    dataset: Any,
    context: Any,
    *,
    pooling: str,
    tokens_per_image: int,
    batch_size: int,
    seed: int,
    description: str = "features",
) -> tuple[np.ndarray, np.ndarray]:
    """Original and quantized pooled features of ``dataset`` through ``model`` (a SegmentationModule),
    the batches shown as ``description`` in ``context.progress``."""
    import torch

    from esq.builtin.data.segmentation import segmentation_loader

    generator = torch.Generator().manual_seed(seed)
    loader = segmentation_loader(dataset, batch_size, shuffle=False)
    originals, squeezed = [], []
    backbone = model.model.backbone
    device = next(model.parameters()).device
    with torch.no_grad():
        for images, _ in context.progress(loader, description, total=len(loader)):
            features = backbone.embed(backbone.preprocess(images).to(device))
            quantized, _ = model.model.squeezed(features)
            pair = pool_pair(features.float(), quantized.float(), pooling, tokens_per_image, generator)
            originals.append(pair[0].cpu())
            squeezed.append(pair[1].cpu())
    return torch.cat(originals).numpy(), torch.cat(squeezed).numpy()
