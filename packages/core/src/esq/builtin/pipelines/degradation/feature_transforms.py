"""Feature transforms of ``esq run degradation``: how a layer's activations become one vector
per image before a distribution metric sees them.

A transform's name is ``raw`` (average over positions) or ``gram`` (the Gram matrix's upper
triangle), optionally followed by ``_pca`` (reduce to ``pca_dim`` components) or ``_pca_<dim>``:

>>> parse_transform("gram_pca", pca_dim=10)
Transform(name='gram_pca', pooling='gram', pca_dim=10)
>>> parse_transform("raw_pca_64", pca_dim=10)
Transform(name='raw_pca_64', pooling='gap', pca_dim=64)
>>> parse_transform("raw", pca_dim=10).pca_dim is None
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esq import ConfigError, DataError

TRANSFORM_PATTERN = re.compile(r"(?P<base>raw|gram)(?P<pca>_pca(?:_(?P<dim>[1-9][0-9]*))?)?")
POOLING = {"raw": "gap", "gram": "gram"}


@dataclass(frozen=True)
class Transform:
    name: str
    pooling: str
    pca_dim: int | None


def parse_transform(name: str, pca_dim: int) -> Transform:
    match = TRANSFORM_PATTERN.fullmatch(name)
    if match is None:
        raise ConfigError(
            f"transforms: unknown transform {name!r}; use raw or gram, optionally with _pca or _pca_<dim> "
            "(raw, gram, gram_pca, gram_pca_20)"
        )
    dim = int(match["dim"]) if match["dim"] else (pca_dim if match["pca"] else None)
    return Transform(name, POOLING[match["base"]], dim)


def pooled_width(pooling: str, channels: int) -> int:
    """Width of one layer's pooled vector: ``C`` for ``gap``, ``C(C+1)/2`` for ``gram``."""
    return channels * (channels + 1) // 2 if pooling == "gram" else channels


def pool_chunks(chunks: Sequence[Any], pooling: str, source: str = "activations") -> Any:
    """Pool memory-mapped activation chunks one at a time into an ``(N, F)`` float64 tensor. A
    chunk holding NaN or infinite values is a ``DataError`` naming its cache file (or ``source``,
    for activations held in memory)."""
    import numpy as np
    import torch

    from esq.builtin.pooling import pool

    parts = []
    for chunk in chunks:
        array = np.array(chunk, dtype=np.float32)
        if not np.isfinite(array).all():
            raise DataError(_not_finite(chunk, source))
        parts.append(pool(torch.from_numpy(array), pooling).double())
    return torch.cat(parts)


def _not_finite(chunk: Any, source: str) -> str:
    filename = getattr(chunk, "filename", None)
    if filename is None:
        return f"{source}: the backbone gave NaN or infinite activations; check its weights and inputs"
    return (
        f"cache chunk {filename} holds NaN or infinite values; remove that entry (esq cache rm, or delete "
        f"{Path(filename).parent}) and run again (float16 storage overflows beyond ±65504: use cache_dtype=float32)"
    )


def apply_pca(reference: Any, others: dict[str, Any], dim: int) -> tuple[Any, dict[str, Any]]:
    """PCA to ``dim`` components fitted on ``reference`` and applied to it and every other set."""
    from esq.builtin.pooling import PCA

    pca = PCA(dim).fit(reference)
    return pca.transform(reference), {name: pca.transform(matrix) for name, matrix in others.items()}
