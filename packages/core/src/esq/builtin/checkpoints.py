"""``esq.load_checkpoint(path)``: a trained model back from its file, with no other input.

Two layouts are read, both with ``torch.load(weights_only=True)`` after the file's checksums are
verified (``esq.load_torch_file``; a legacy non-zip file has none):

- esq's Lightning checkpoints (``last.ckpt``, ``best.ckpt``): ``hyper_parameters`` name the
  backbone and its options, the quantizer and its options, the classes, the loss and the data
  settings; ``state_dict`` holds every weight, the frozen backbone's included.
- the previous tool's raw ``.pth`` files (see :mod:`esq.builtin.compat`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esq import CheckpointError, load_plugins
from esq.builtin.training.checkpoint_state import (
    LIGHTNING_KEYS,
    check_matches,
    checked_hparams,
    checked_state,
    module_from_state,
    read_checkpoint,
)
from esq.builtin.training.module import SegmentationModule


def load_checkpoint(path: str | Path, plugins: Any = None, **expected: Any) -> SegmentationModule:
    """The model saved in ``path`` (an esq ``.ckpt`` or the previous tool's ``.pth``), in eval mode,
    built from the components of ``plugins`` (default: ``esq.load_plugins()``).

    ``expected`` (``backbone=``, ``quantizer=``, ``num_classes=``) refuses a checkpoint of
    another model, naming what it holds.
    """
    plugins = plugins if plugins is not None else load_plugins()
    checkpoint = read_checkpoint(path)
    if all(key in checkpoint for key in LIGHTNING_KEYS):
        hparams = checked_hparams(path, checkpoint["hyper_parameters"])
        check_matches(path, hparams, expected)
        return module_from_state(path, hparams, checked_state(path, "state_dict", checkpoint["state_dict"]), plugins)
    from esq.builtin.compat import LEGACY_KEYS, module_from_legacy

    if "backbone_state_dict" in checkpoint:
        return module_from_legacy(path, checkpoint, plugins, **expected)
    found = ", ".join(sorted(map(str, checkpoint))[:12]) or "nothing"
    raise CheckpointError(
        f"{path}: unknown checkpoint layout; found keys {found}. esq reads its own .ckpt files "
        f"({', '.join(LIGHTNING_KEYS)}) and the previous tool's .pth files ({', '.join(LEGACY_KEYS[:3])}, ...)"
    )
