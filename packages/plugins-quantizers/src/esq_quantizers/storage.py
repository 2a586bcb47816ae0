"""Compressed embeddings on disk: codes bit-packed at ceil(total bits per vector), after a small
header (quantizer name, options, shape), written atomically.

Layout: ``ESQCODES1\\n``, a 4-byte little-endian header length, the JSON header, the payload.
Each vector's ``q`` codes in ``[0, K)`` are joined into one integer ``Σ c_i K^i`` below ``K^q`` and
stored in ``(K^q − 1).bit_length()`` bits, which is ceil(q · log2 K); past 63 bits each code is
stored on its own in ``(K − 1).bit_length()`` bits. A quantizer whose codes are floats says so in
``code_dtype`` (``identity``: ``"float32"``, ``float16``: ``"float16"``); its codes are stored raw in
that type (32 or 16 bits a value).
Decoding needs the quantizer's weights as well (``state_dict``): the file holds codes only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esq import DataError, write_atomic

MAGIC = b"ESQCODES1\n"
COMBINED_LIMIT = 63
# Layouts of float codes (a quantizer's ``code_dtype``): numpy type, torch type name, bits a value.
FLOAT_LAYOUTS = {"float32": (np.float32, "float32", 32), "float16": (np.float16, "float16", 16)}


@dataclass(frozen=True)
class PackedCodes:
    """What ``unpack`` returns: the codes, and the quantizer that made them."""

    codes: torch.Tensor
    quantizer: str
    options: dict[str, Any]
    bits_per_vector: int


def _layout(codes_per_vector: int, radix: int) -> tuple[str, int]:
    combined = (radix**codes_per_vector - 1).bit_length()
    if combined <= COMBINED_LIMIT:
        return "combined", combined
    return "per_code", codes_per_vector * (radix - 1).bit_length()


def _to_bits(values: np.ndarray, bits: int) -> bytes:
    shifts = np.arange(bits, dtype=np.uint64)
    matrix = ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(matrix.ravel(), bitorder="little").tobytes()


def _from_bits(payload: bytes, count: int, bits: int) -> np.ndarray:
    flat = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), bitorder="little")[: count * bits]
    matrix = flat.reshape(count, bits).astype(np.uint64)
    return (matrix << np.arange(bits, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def float_layout(quantizer: Any) -> str | None:
    """The float layout of ``quantizer``'s codes (its ``code_dtype``), or ``None`` for integer codes."""
    dtype = getattr(quantizer, "code_dtype", None)
    if dtype is None:
        return None
    if dtype not in FLOAT_LAYOUTS:
        raise DataError(f"pack: {quantizer.name}'s code_dtype {dtype!r} is not one of {', '.join(FLOAT_LAYOUTS)}")
    return dtype


def _check_codes(codes: Any, quantizer: Any) -> None:
    if not all(hasattr(quantizer, name) for name in ("name", "options", "codes_per_vector", "code_radix")):
        raise DataError(f"pack: {type(quantizer).__name__} is not an esq-quantizers quantizer")
    if not torch.is_tensor(codes):
        raise DataError(f"pack: codes must be a tensor from {quantizer.name}.encode(), got {type(codes).__name__}")
    if float_layout(quantizer) is not None:
        if not codes.is_floating_point() or codes.ndim < 1 or codes.shape[-1] != quantizer.input_dim:
            raise DataError(
                f"pack: {quantizer.name}'s codes are float features of width {quantizer.input_dim}, "
                f"got {codes.dtype} {tuple(codes.shape)}"
            )
        return
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise DataError(f"pack: codes must be integers from {quantizer.name}.encode(), got {codes.dtype}")
    q = quantizer.codes_per_vector
    if q > 1 and (codes.ndim < 1 or codes.shape[-1] != q):
        raise DataError(
            f"pack: {quantizer.name} gives {q} codes per vector (the last axis), got shape {tuple(codes.shape)}"
        )


def pack(codes: torch.Tensor, quantizer: Any, path: str | Path) -> Path:
    """Write ``codes`` (from ``quantizer.encode``) to ``path``; returns the path.

    >>> import tempfile, torch, esq
    >>> quantizer = esq.registry("quantizers").create("vq", input_dim=8, codebook_size=16)
    >>> codes = quantizer.encode(torch.randn(2, 10, 8))
    >>> path = pack(codes, quantizer, tempfile.mkdtemp() + "/codes.esq")
    >>> torch.equal(unpack(path).codes, codes)
    True
    """
    _check_codes(codes, quantizer)
    header: dict[str, Any] = {"quantizer": quantizer.name, "options": quantizer.options, "shape": list(codes.shape)}
    layout = float_layout(quantizer)
    if layout is not None:
        numpy_type, torch_type, bits = FLOAT_LAYOUTS[layout]
        values = codes.detach().to(getattr(torch, torch_type)).contiguous().cpu().numpy()
        if not np.isfinite(values).all():
            raise DataError(f"pack: {quantizer.name}'s codes hold NaN or infinite values (not {layout} features)")
        payload = values.astype(numpy_type, copy=False).tobytes()
        header.update(layout=layout, bits_per_vector=bits * quantizer.input_dim)
    else:
        q, radix = quantizer.codes_per_vector, quantizer.code_radix
        flat = codes.detach().cpu().reshape(-1, q).numpy().astype(np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= radix):
            raise DataError(f"pack: codes must lie in [0, {radix}) for {quantizer.name}; got {flat.min()}…{flat.max()}")
        layout, bits = _layout(q, radix)
        if layout == "combined":
            values = np.zeros(len(flat), dtype=np.uint64)
            for level in reversed(range(q)):
                values = values * np.uint64(radix) + flat[:, level].astype(np.uint64)
            payload = _to_bits(values, bits)
        else:
            payload = _to_bits(flat.reshape(-1).astype(np.uint64), bits // q)
        header.update(layout=layout, bits_per_vector=bits, code_radix=radix, codes_per_vector=q)
    encoded = json.dumps(header).encode()
    return write_atomic(path, MAGIC + len(encoded).to_bytes(4, "little") + encoded + payload)


def unpack(path: str | Path) -> PackedCodes:
    """Read a file written by ``pack``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such codes file") from None
    if not data.startswith(MAGIC):
        raise DataError(f"{path}: not an esq codes file (it does not start with {MAGIC!r})")
    start = len(MAGIC) + 4
    size = int.from_bytes(data[len(MAGIC) : start], "little")
    try:
        header = json.loads(data[start : start + size])
        shape, bits = header["shape"], header["bits_per_vector"]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: the header is corrupt ({error}); write the file again with pack()") from None
    payload = data[start + size :]
    values = int(np.prod(shape))
    layout = header.get("layout")
    if layout not in (*FLOAT_LAYOUTS, "combined", "per_code"):
        raise DataError(f"{path}: the header names an unknown layout {layout!r}; write the file again with pack()")
    if layout in FLOAT_LAYOUTS:
        expected = values * FLOAT_LAYOUTS[layout][2] // 8
    else:
        expected = math.ceil(values // header["codes_per_vector"] * bits / 8)
    if len(payload) != expected:
        raise DataError(f"{path}: truncated or corrupt: {len(payload)} bytes of codes, expected {expected}")
    if layout in FLOAT_LAYOUTS:
        codes = torch.from_numpy(np.frombuffer(payload, dtype=FLOAT_LAYOUTS[layout][0]).copy()).reshape(shape)
    else:
        q, radix, bits = header["codes_per_vector"], header["code_radix"], header["bits_per_vector"]
        count = int(np.prod(shape)) // q
        if header["layout"] == "combined":
            values = _from_bits(payload, count, bits)
            digits = []
            for _ in range(q):
                digits.append(values % np.uint64(radix))
                values = values // np.uint64(radix)
            if (values != 0).any():
                raise DataError(f"{path}: corrupt: a stored value exceeds {radix}^{q}")
            flat = np.stack(digits, axis=1)
        else:
            flat = _from_bits(payload, count * q, bits // q).reshape(count, q)
        codes = torch.from_numpy(flat.astype(np.int64)).reshape(shape)
    return PackedCodes(codes, header["quantizer"], header["options"], header["bits_per_vector"])
