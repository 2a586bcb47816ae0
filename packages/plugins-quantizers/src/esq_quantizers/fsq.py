"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
Simple"), via ``FSQ``.

Each of ``len(levels)`` bounded dimensions is rounded to one of ``levels[i]`` values: the
codebook is implicit, of size prod(levels), and a vector costs Σ log2(levels[i]) bits.
"""

from __future__ import annotations

import math

import torch
from vector_quantize_pytorch import FSQ as LibraryFSQ

from esq import ConfigError
from esq_quantizers.base import BottleneckQuantizer

# Levels the FSQ paper recommends for a target codebook size (its Table 1).
RECOMMENDED_LEVELS = {
    2**8: [8, 6, 5],
    2**10: [8, 5, 5, 5],
    2**12: [7, 5, 5, 5, 5],
    2**14: [8, 8, 8, 6, 5],
    2**16: [8, 8, 8, 5, 5, 5],
}


def fsq_levels(levels: list[int] | None, codebook_size: int | None) -> list[int]:
    """``levels`` as given, or the paper's recommendation for ``codebook_size``."""
    if levels is None and codebook_size is None:
        codebook_size = 2**10
    if levels is not None and codebook_size is not None:
        raise ConfigError("fsq: give levels or codebook_size, not both")
    if levels is None:
        if codebook_size not in RECOMMENDED_LEVELS:
            sizes = ", ".join(f"2^{int(math.log2(s))}" for s in RECOMMENDED_LEVELS)
            raise ConfigError(
                f"fsq: no recommended levels for codebook_size={codebook_size}; use one of {sizes}, "
                "or give levels=[...]"
            )
        return list(RECOMMENDED_LEVELS[codebook_size])
    levels = list(levels)
    if not levels or any(isinstance(level, bool) or not isinstance(level, int) or level < 2 for level in levels):
        raise ConfigError(f"fsq: levels must be integers of at least 2, got {levels}")
    return levels


class FSQ(BottleneckQuantizer):
    """Rounds each of ``len(levels)`` projected dimensions to its grid."""

    name = "fsq"

    def __init__(
        self,
        input_dim: int,
        bottleneck_dim: int = 64,
        levels: list[int] | None = None,
        codebook_size: int | None = None,
    ) -> None:
        chosen = fsq_levels(levels, codebook_size)
        super().__init__(input_dim, bottleneck_dim, {"levels": chosen})
        self.levels = chosen
        self.code_radix = math.prod(chosen)
        # The library needs preserve_symmetry for a level of 2 (a grid of {-1, 1}).
        self.library = LibraryFSQ(levels=chosen, dim=bottleneck_dim, preserve_symmetry=2 in chosen)

    @property
    def bits_per_vector(self) -> float:
        return sum(math.log2(level) for level in self.levels)

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, codes = self.library(z)
        return quantized, codes, z.new_zeros(())

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.library.indices_to_codes(codes)
