"""Reading a checkpoint file and fitting its weights into a ``SegmentationModule``: what esq's
own ``.ckpt`` files and the previous tools' ``.pth`` files (``esq.builtin.compat``) share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from esq import CheckpointError
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
