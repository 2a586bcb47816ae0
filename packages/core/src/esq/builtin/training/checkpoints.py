"""``esq.load_checkpoint(path)``: a trained model back from its file, with no other input.

Two layouts are read, both with ``torch.load(weights_only=True)``:

- esq's Lightning checkpoints (``last.ckpt``, ``best.ckpt``): ``hyper_parameters`` name the
  backbone and its options, the quantizer and its options, the classes, the loss and the data
  settings; ``state_dict`` holds every weight, the frozen backbone's included.
- the previous tool's raw ``.pth`` files (see :mod:`esq.builtin.training.legacy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from esq import CheckpointError, load_plugins
from esq.builtin.training import NO_QUANTIZER
from esq.builtin.training.module import SegmentationModule

LIGHTNING_KEYS = ("hyper_parameters", "state_dict")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's top-level dict, or a ``CheckpointError`` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint (corrupt or truncated?): {reason}") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict of checkpoint entries, found {type(checkpoint).__name__}")
    return checkpoint


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
    module = module if module is not None else SegmentationModule(**hparams, pretrained=False, plugins=plugins)
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


def load_checkpoint(path: str | Path, plugins: Any = None, **expected: Any) -> SegmentationModule:
    """The model saved in ``path`` (an esq ``.ckpt`` or the previous tool's ``.pth``), in eval mode,
    built from the components of ``plugins`` (default: ``esq.load_plugins()``).

    ``expected`` (``backbone=``, ``quantizer=``, ``num_classes=``) refuses a checkpoint of
    another model, naming what it holds.
    """
    plugins = plugins if plugins is not None else load_plugins()
    checkpoint = read_checkpoint(path)
    if all(key in checkpoint for key in LIGHTNING_KEYS):
        hparams = dict(checkpoint["hyper_parameters"])
        check_matches(path, hparams, expected)
        return module_from_state(path, hparams, checkpoint["state_dict"], plugins)
    from esq.builtin.training.legacy import LEGACY_KEYS, module_from_legacy

    if "backbone_state_dict" in checkpoint:
        return module_from_legacy(path, checkpoint, plugins, **expected)
    found = ", ".join(sorted(map(str, checkpoint))[:12]) or "nothing"
    raise CheckpointError(
        f"{path}: unknown checkpoint layout; found keys {found}. esq reads its own .ckpt files "
        f"({', '.join(LIGHTNING_KEYS)}) and the previous tool's .pth files ({', '.join(LEGACY_KEYS[:3])}, ...)"
    )
