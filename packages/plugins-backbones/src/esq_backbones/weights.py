"""Pretrained weights, offline: where each file lives, and loading it with checks.

``weights`` is ``"none"`` (random init, under the caller's seed), ``"default"`` (the library's
pretrained file, looked up in the local cache torchvision, timm and Hugging Face use; never
downloaded) or a path to a ``.pth``/``.pt``/``.safetensors`` file. Files load with
``weights_only=True``, after a zip-format ``torch.save`` file's CRC-32 checksums are verified
(about 0.3 s a GiB; a legacy non-zip file has none to verify); a file for another architecture is
reported with its missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esq import CheckpointError, ConfigError, load_torch_file

SHOWN_KEYS = 5


def hub_checkpoints() -> Path:
    """The folder torchvision (``torch.hub``) keeps downloaded weights in."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class PretrainedFile:
    """One file a backbone's ``weights="default"`` needs: its place and where it comes from."""

    what: str
    path: Path
    source: str
    alternatives: tuple[Path, ...] = ()

    def find(self) -> Path | None:
        return next((path for path in (self.path, *self.alternatives) if path.is_file()), None)

    def require(self, backbone: str) -> Path:
        found = self.find()
        if found is None:
            raise CheckpointError(
                f"{backbone}: weights='default' needs {self.what} at {self.path}, which is missing; "
                f"download {self.source} on a machine with internet and put it in {self.path.parent}/ "
                f"(`esq weights {backbone}` lists every file), or pass weights=PATH or weights='none'"
            )
        return found


def torchvision_file(weights_enum: Any) -> PretrainedFile:
    """The hub file of a torchvision weights enum member (``ResNet50_Weights.DEFAULT``...)."""
    filename = weights_enum.url.rsplit("/", 1)[-1]
    return PretrainedFile(f"torchvision's {weights_enum}", hub_checkpoints() / filename, weights_enum.url)


def huggingface_file(repo: str, filename: str, hub_name: str) -> PretrainedFile:
    """A file of a Hugging Face repository: found in the HF cache (``hf download REPO`` fills it),
    or as ``hub_name`` in the torch hub folder."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, filename)
    alternatives = (Path(cached),) if isinstance(cached, str) else ()
    return PretrainedFile(
        f"{repo}'s {filename}",
        hub_checkpoints() / hub_name,
        f"https://huggingface.co/{repo}/resolve/main/{filename}",
        alternatives,
    )


def read_state_dict(path: str | Path, backbone: str) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``torch.save`` file (``weights_only=True``), unwrapped
    from a ``state_dict``/``model`` entry and a DataParallel ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{backbone}: weights file {path} does not exist; pass an existing file, 'default' or 'none'"
        )
    what = f"{backbone}: weights file {path}"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except OSError:
            raise
        except Exception as error:  # any reader failure means an unreadable file
            raise CheckpointError(f"{what}: safetensors cannot read it ({type(error).__name__}: {error})") from None
    else:
        state = load_torch_file(path, what)
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(value) for value in state.values()):
        raise CheckpointError(f"{backbone}: weights file {path} holds no state dict of tensors")
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return dict(state)


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" … ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else "")


def load_checked(
    module: nn.Module, state: Mapping[str, torch.Tensor], backbone: str, source: str, ignore: tuple[str, ...] = ()
) -> None:
    """Load ``state`` into ``module`` exactly; keys starting with a prefix in ``ignore`` are
    skipped (parts esq replaces, such as a classification head). Anything else that does not fit
    is a ``CheckpointError`` listing missing, unexpected and mis-shaped keys."""
    expected = {key: value for key, value in module.state_dict().items() if not key.startswith(ignore)}
    given = {key: value for key, value in state.items() if not key.startswith(ignore)}
    # BatchNorm fills in num_batches_tracked itself; files from before PyTorch 0.4.1 lack it
    missing = {key for key in expected.keys() - given.keys() if not key.endswith("num_batches_tracked")}
    unexpected = given.keys() - expected.keys()
    shapes = [
        f"{key} {tuple(given[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected.keys() & given.keys()
        if given[key].shape != expected[key].shape
    ]
    if missing or unexpected or shapes:
        problems = [
            f"missing keys: {_listed(missing)}" if missing else "",
            f"unexpected keys: {_listed(unexpected)}" if unexpected else "",
            f"shape mismatches: {_listed(shapes)}" if shapes else "",
        ]
        raise CheckpointError(
            f"{backbone}: {source} does not fit this architecture ({'; '.join(p for p in problems if p)}); "
            "pass weights made for this backbone"
        )
    module.load_state_dict(given, strict=False)


def apply_weights(
    weights: str | Path,
    backbone: str,
    module: nn.Module,
    default: Callable[[], PretrainedFile] | None,
    ignore: tuple[str, ...] = (),
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lambda state: state,
) -> None:
    """Resolve ``weights`` for ``module``: leave the random init, or load the default or given file."""
    if not isinstance(weights, (str, Path)) or not str(weights):
        raise ConfigError(f"{backbone}: weights must be 'none', 'default' or a file path, got {weights!r}")
    if str(weights) == "none":
        return
    if str(weights) == "default":
        if default is None:
            raise ConfigError(f"{backbone} has no pretrained weights; use weights='none' or a file path")
        path = default().require(backbone)
    else:
        path = Path(weights).expanduser()
    load_checked(module, convert(read_state_dict(path, backbone)), backbone, f"weights file {path}", ignore)
