"""The one validation vocabulary every component uses: options (``check_int``, ``check_number``,
``check_choice``, ``check_bool``) and arrays (``as_matrix``, ``paired_features``, ``two_samples``).

Each check returns the value it accepted and raises ``ConfigError`` (options) or ``DataError``
(data) with a message that names the owner, the option and the value, and says what is allowed.

>>> check_int("vq", "codebook_size", 512, minimum=2)
512
>>> check_int("vq", "codebook_size", 1, minimum=2)
Traceback (most recent call last):
...
esq.errors.ConfigError: vq: codebook_size must be an integer at least 2, got 1
>>> check_number("kid", "epsilon", 0.5, minimum=0, maximum=1, exclusive=("maximum",))
0.5
>>> check_choice("gmm", "covariance_type", "ful", ("full", "diag"))
Traceback (most recent call last):
...
esq.errors.ConfigError: gmm: covariance_type must be one of 'full', 'diag' (did you mean 'full'?), got 'ful'
>>> paired_features([[1.0, 2.0], [3.0, 4.0]], [[1.0], [2.0]])[1].shape
(2, 1)
>>> paired_features([1.0, 2.0], [[1.0], [2.0]])
Traceback (most recent call last):
...
esq.errors.DataError: argument `x` expected a 2-D array (samples × features), got shape (2,)
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from esq.errors import ConfigError, DataError
from esq.names import did_you_mean


def check_folder(option: str, path: str | os.PathLike[str], wanted: str) -> Path:
    """``path`` if it is a folder, else a ``DataError`` naming ``option``: no such folder, or a
    file where a folder is wanted; ``wanted`` says what to give instead.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".txt") as file:
    ...     check_folder("features_dir", file.name, "the run folder of an earlier step")
    Traceback (most recent call last):
    esq.errors.DataError: features_dir /....txt: a file, not a folder; give the run folder of an earlier step
    """
    folder = Path(path)
    if folder.is_dir():
        return folder
    problem = "a file, not a folder" if folder.exists() else "no such folder"
    raise DataError(f"{option} {folder}: {problem}; give {wanted}")


def _bounds(minimum: float | None, maximum: float | None, exclusive: Iterable[str]) -> str:
    exclusive = set(exclusive)
    parts = []
    if minimum is not None:
        parts.append(f"greater than {minimum}" if "minimum" in exclusive else f"at least {minimum}")
    if maximum is not None:
        parts.append(f"less than {maximum}" if "maximum" in exclusive else f"at most {maximum}")
    return " and ".join(parts)


def _outside(value: float, minimum: float | None, maximum: float | None, exclusive: Iterable[str]) -> bool:
    exclusive = set(exclusive)
    if minimum is not None and (value <= minimum if "minimum" in exclusive else value < minimum):
        return True
    return maximum is not None and (value >= maximum if "maximum" in exclusive else value > maximum)


def check_int(
    owner: str,
    name: str,
    value: Any,
    minimum: int | None = None,
    maximum: int | None = None,
    exclusive: Iterable[str] = (),
) -> int:
    """``value`` as an ``int`` (a ``bool`` is not one) within the bounds, or a ``ConfigError``.

    ``exclusive`` names the bounds that are not allowed themselves: ``("minimum",)``, ``("maximum",)``.

    >>> check_int("rvq", "num_quantizers", True, minimum=1)
    Traceback (most recent call last):
    ...
    esq.errors.ConfigError: rvq: num_quantizers must be an integer at least 1, got True
    """
    exclusive = tuple(exclusive)
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or _outside(value, minimum, maximum, exclusive)
    ):
        bounds = _bounds(minimum, maximum, exclusive)
        raise ConfigError(f"{owner}: {name} must be an integer{' ' + bounds if bounds else ''}, got {value!r}")
    return int(value)


def check_number(
    owner: str,
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive: Iterable[str] = (),
) -> float:
    """``value`` as a finite ``float`` (not a ``bool``) within the bounds, or a ``ConfigError``.

    >>> check_number("fid", "eps", 0, minimum=0, exclusive=("minimum",))
    Traceback (most recent call last):
    ...
    esq.errors.ConfigError: fid: eps must be a finite number greater than 0, got 0
    """
    exclusive = tuple(exclusive)
    valid = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if not valid or _outside(value, minimum, maximum, exclusive):
        bounds = _bounds(minimum, maximum, exclusive)
        raise ConfigError(f"{owner}: {name} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}")
    return float(value)


def check_choice(owner: str, name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``, or a ``ConfigError`` listing them (and the closest)."""
    if isinstance(value, str | int | float | bool | None | tuple) and value in choices:
        return value
    hint = did_you_mean(value, [str(choice) for choice in choices]) if isinstance(value, str) else ""
    listed = ", ".join(repr(choice) for choice in choices)
    raise ConfigError(f"{owner}: {name} must be one of {listed}{hint}, got {value!r}")


def check_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (not ``1``, not ``"yes"``), or a ``ConfigError``.

    >>> check_bool("kid", "unbiased", 1)
    Traceback (most recent call last):
    ...
    esq.errors.ConfigError: kid: unbiased must be true or false, got 1
    """
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}: {name} must be true or false, got {value!r}")
    return value


def as_matrix(name: str, array: Any, min_rows: int = 2) -> np.ndarray:
    """``array`` as a finite float64 matrix with at least ``min_rows`` rows; strings, complex
    numbers and ragged rows are refused.

    >>> as_matrix("x", [[1.0, 2.0], [3.0]])
    Traceback (most recent call last):
    ...
    esq.errors.DataError: argument `x` must be a matrix of real numbers (rows of equal length), got ragged rows
    """
    if hasattr(array, "detach"):
        array = array.detach().cpu()
        array = array.numpy() if array.is_complex() else array.double().numpy()
    expected = f"argument `{name}` must be a matrix of real numbers (rows of equal length)"
    try:
        raw = np.asarray(array)
    except ValueError:
        raise DataError(f"{expected}, got ragged rows") from None
    if raw.dtype.kind not in "biuf":
        kinds = {"c": "complex numbers", "U": "strings", "S": "bytes", "O": "ragged rows or objects"}
        raise DataError(f"{expected}, got {kinds.get(raw.dtype.kind, raw.dtype)}")
    matrix = raw.astype(np.float64)
    if matrix.ndim != 2:
        raise DataError(f"argument `{name}` expected a 2-D array (samples × features), got shape {matrix.shape}")
    if matrix.shape[0] < min_rows or matrix.shape[1] < 1:
        raise DataError(f"argument `{name}` needs at least {min_rows} rows and 1 column, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise DataError(f"argument `{name}` contains NaN or infinite values; remove or fix those rows")
    return matrix


def paired_features(x: Any, y: Any, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Similarity metrics' input: row i of ``x`` and of ``y`` describe the same sample."""
    x, y = as_matrix("x", x, min_rows), as_matrix("y", y, min_rows)
    if x.shape[0] != y.shape[0]:
        raise DataError(
            "arguments `x` and `y` must have the same number of rows (paired samples), "
            f"got {x.shape[0]} and {y.shape[0]}"
        )
    return x, y


def two_samples(reference: Any, other: Any, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Distribution metrics' input: two samples of vectors of one dimension."""
    reference, other = as_matrix("reference", reference, min_rows), as_matrix("other", other, min_rows)
    if reference.shape[1] != other.shape[1]:
        raise DataError(
            f"arguments `reference` and `other` must have the same number of columns, "
            f"got {reference.shape[1]} and {other.shape[1]}"
        )
    return reference, other


def check_device(owner: str, name: str, value: Any) -> str:
    """``value`` if torch can put tensors there on this machine (``cpu``, ``cuda``, ``cuda:1``,
    ``mps``...), or a ``ConfigError`` that says which devices there are.

    >>> check_device("similarity", "device", "cpu")
    'cpu'
    >>> check_device("similarity", "device", "banana")
    Traceback (most recent call last):
    ...
    esq.errors.ConfigError: similarity: device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got 'banana'
    """
    import torch

    try:
        device = torch.device(value if isinstance(value, str) else None)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"{owner}: {name} must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got {value!r}"
        ) from None
    if device.type == "cpu":
        return str(value)
    backend = getattr(torch, device.type, None)
    available = backend is not None and getattr(backend, "is_available", lambda: False)()
    count = getattr(backend, "device_count", lambda: 1)() if available else 0
    if not available or (device.index is not None and device.index >= count):
        found = f"{count} {device.type} device(s)" if available else f"no {device.type} device"
        raise ConfigError(f"{owner}: {name} is {value!r}, but this machine has {found}; use 'cpu' or another device")
    return str(value)
