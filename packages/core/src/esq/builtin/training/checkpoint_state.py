"""Reading a checkpoint file and fitting its weights into a ``SegmentationModule``: what esq's
own ``.ckpt`` files and the previous tools' ``.pth`` files (``esq.builtin.compat``) share.

Every file is verified before use: a zip-format file (what ``torch.save`` writes since PyTorch
1.6, Lightning's ``.ckpt`` included) has a CRC-32 per member, and each is checked (about 0.3 s a
GiB), so flipped bytes or a truncated copy are refused with the file's name instead of loading
different numbers. A legacy (pre-1.6, non-zip) file carries no checksum and cannot be verified.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from esq import CheckpointError, EsqError, load_torch_file
from esq.builtin.training import NO_QUANTIZER
from esq.builtin.training.module import SegmentationModule

LIGHTNING_KEYS = ("hyper_parameters", "state_dict")
# what a hyper-parameter must be, by name (the rest of SegmentationModule's are plain numbers/strings)
HPARAM_TYPES: dict[str, tuple[type, ...]] = {
    "backbone": (str,),
    "num_classes": (int,),
    "backbone_options": (dict,),
    "quantizer": (str,),
    "quantizer_options": (dict,),
    "encoder_adapter": (bool,),
    "decoder_adapter": (bool,),
    "loss": (str,),
    "loss_options": (dict,),
    "lr": (int, float),
    "vq_loss_weight": (int, float),
    "ignore_index": (int,),
    "class_names": (list, tuple),
    "data": (dict,),
}
REQUIRED_HPARAMS = ("backbone", "num_classes")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's top-level dict, or a ``CheckpointError`` naming the file and the problem
    (``esq.load_torch_file``: its checksums are verified first)."""
    checkpoint = load_torch_file(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict of checkpoint entries, found {type(checkpoint).__name__}")
    return checkpoint


def module_parameters() -> tuple[str, ...]:
    """The hyper-parameters a ``SegmentationModule`` takes (and its checkpoints record)."""
    ignored = ("self", "pretrained", "plugins")
    return tuple(name for name in inspect.signature(SegmentationModule.__init__).parameters if name not in ignored)


def checked_hparams(path: str | Path, hparams: Any) -> dict[str, Any]:
    """A Lightning checkpoint's ``hyper_parameters`` as a dict ``SegmentationModule`` takes, or a
    ``CheckpointError`` naming the file and the entry that is wrong."""
    if not isinstance(hparams, Mapping):
        raise CheckpointError(
            f"{path}: its hyper_parameters are a {type(hparams).__name__}, not a table of settings; "
            "it was not written by esq run squeeze/baseline: use a checkpoint of such a run"
        )
    hparams = dict(hparams)
    known = module_parameters()
    unknown = sorted(str(key) for key in hparams if key not in known)
    if unknown:
        raise CheckpointError(
            f"{path}: unknown hyper-parameter(s) {', '.join(unknown)} (a newer esq's or another program's "
            f"checkpoint?); this esq reads {', '.join(known)}"
        )
    missing = [key for key in REQUIRED_HPARAMS if key not in hparams]
    if missing:
        raise CheckpointError(f"{path}: its hyper_parameters lack {', '.join(missing)}, which name the model")
    for key, types in HPARAM_TYPES.items():
        value = hparams.get(key)
        refused = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if value is not None and refused:
            wanted = " or ".join(kind.__name__ for kind in types)
            raise CheckpointError(
                f"{path}: hyper-parameter {key} is {value!r} ({type(value).__name__}), expected {wanted}"
            )
    return hparams


def checked_state(path: str | Path, name: str, state: Any) -> dict[str, torch.Tensor]:
    """``state`` if it is a dict of tensors, else a ``CheckpointError`` naming the entry."""
    if not isinstance(state, Mapping) or not all(torch.is_tensor(value) for value in state.values()):
        kind = type(state).__name__ if not isinstance(state, Mapping) else "dict holding non-tensors"
        raise CheckpointError(f"{path}: its {name} is a {kind}, expected a dict of tensors")
    return dict(state)


def training_progress(checkpoint: dict[str, Any]) -> tuple[int, int, bool]:
    """``(epochs done, global step, stopped mid-epoch)`` of a Lightning checkpoint: what
    ``--resume`` goes on from. An epoch is done once its training batches are (Lightning counts it
    "processed" before its end-of-epoch hooks, where ``last.ckpt`` is written)."""
    try:
        epochs = checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]
        done, started = int(epochs["processed"]), int(epochs["started"])
    except (KeyError, TypeError, ValueError):
        epoch = checkpoint.get("epoch")
        done, started = (epoch + 1 if isinstance(epoch, int) else 0), 0
    step = checkpoint.get("global_step", 0)
    return done, int(step) if isinstance(step, int) else 0, started > done


def describe(hparams: dict[str, Any]) -> str:
    quantizer = hparams.get("quantizer", NO_QUANTIZER)
    return f"backbone {hparams.get('backbone')!r}, quantizer {quantizer!r}, {hparams.get('num_classes')} classes"


def check_matches(path: str | Path, hparams: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a checkpoint whose backbone, quantizer or classes differ from ``expected``."""
    for key, wanted in expected.items():
        found = hparams.get(key)
        if wanted is not None and found != wanted:
            raise CheckpointError(
                f"{path}: a checkpoint of {key} {found!r}, but this run uses {key} {wanted!r}; "
                f"pass a checkpoint trained with {key} {wanted!r} (it holds {describe(hparams)})"
            )


def module_from_state(
    path: str | Path,
    hparams: dict[str, Any],
    state: dict[str, torch.Tensor],
    plugins: Any,
    module: SegmentationModule | None = None,
) -> SegmentationModule:
    """``module`` (default: a ``SegmentationModule`` built from ``hparams`` with random weights)
    with ``state`` loaded, in eval mode."""
    if module is None:
        try:
            module = SegmentationModule(**hparams, pretrained=False, plugins=plugins)
        except EsqError as error:
            raise CheckpointError(f"{path}: its hyper_parameters do not build a model here: {error}") from None
    wanted = module.state_dict()
    missing = sorted(set(wanted) - set(state))
    unexpected = sorted(set(state) - set(wanted))
    shapes = sorted(key for key in set(wanted) & set(state) if wanted[key].shape != state[key].shape)
    if missing or unexpected or shapes:
        problems = [
            f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
            if keys
        ]
        raise CheckpointError(f"{path}: its weights do not fit {describe(hparams)}: {'; '.join(problems)}")
    module.load_state_dict(state)
    return module.eval()
