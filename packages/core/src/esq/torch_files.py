"""Reading a file ``torch.save`` wrote, as every esq loader does: its checksums verified first,
``weights_only=True`` so that no file runs code, and each way it can fail one line naming it."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

from esq.errors import CheckpointError, EsqError

GLOBAL = "Unsupported global: GLOBAL "
UNPICKLER = "WeightsUnpickler error: "


def verify_torch_file(path: str | Path, what: str = "", error: type[EsqError] = CheckpointError) -> None:
    """Refuse a zip-format torch file whose members do not match their CRC-32, or whose archive
    is cut short; a legacy (non-zip) file carries no checksum and passes unchecked. ``what``
    leads the message (default: the path)."""
    path = Path(path)
    what = what or str(path)
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as problem:
        raise error(f"{what}: a damaged torch archive ({problem}); copy the file again or use another") from None
    if damaged is not None:
        raise error(
            f"{what}: damaged: the checksum (CRC-32) of its member {damaged} does not match its bytes "
            "(flipped bits or a bad copy); copy the file again or use another"
        )


def refusal_reason(problem: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line: for a pickled object its
    global's name (``GLOBAL builtins.print``) and that esq loads only tensors; else torch's first
    line and what it means."""
    text = str(problem)
    if GLOBAL in text:
        name = text.split(GLOBAL, 1)[1].split(" ", 1)[0]
        return (
            f"it holds a pickled Python object (GLOBAL {name}), and esq loads only tensors and plain values "
            "(torch.load weights_only=True) so that no file runs code; save a state_dict of tensors instead"
        )
    after = text.split(UNPICKLER, 1)[-1].splitlines()
    detail = next((line.strip() for line in after if line.strip()), type(problem).__name__).split(". ")[0]
    return f"torch cannot read it ({detail.rstrip('.')}): torch.save did not write it, or the copy is cut short"


def load_torch_file(
    path: str | Path, what: str = "", *, mmap: bool = False, error: type[EsqError] = CheckpointError
) -> Any:
    """What ``torch.save`` stored in ``path``, read on the CPU with ``weights_only=True`` after
    ``verify_torch_file``; ``mmap`` maps tensors instead of reading them where the format allows.
    A missing, damaged, foreign or unsafe file is an ``error`` (default ``CheckpointError``) that
    begins with ``what`` (default: the path); the file system's own errors pass as they are."""
    import torch

    path = Path(path)
    what = what or str(path)
    if not path.is_file():
        raise error(f"{what}: no such file")
    verify_torch_file(path, what, error)
    try:
        with warnings.catch_warnings():  # torch's notes on old pickle protocols, sparse checks
            warnings.simplefilter("ignore")
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as problem:
                if not mmap or "mmap" not in str(problem):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as problem:  # torch's readers raise many kinds for a file that is not theirs
        raise error(f"{what}: {refusal_reason(problem)}") from None
