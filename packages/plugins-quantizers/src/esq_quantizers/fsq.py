"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
Simple"), via ``FSQ``.

Each of ``len(levels)`` bounded dimensions is rounded to one of ``levels[i]`` values: the
codebook is implicit, of size prod(levels), and a vector costs Σ log2(levels[i]) bits.
"""

from __future__ import annotations

import math

import torch
from vector_quantize_pytorch import FSQ as LibraryFSQ

from esq import ConfigError, check_choice, check_int
from esq_quantizers.base import BottleneckQuantizer, check_codebook_size

# Levels the FSQ paper recommends for a target codebook size (its Table 1).
RECOMMENDED_LEVELS = {
    2**8: [8, 6, 5],
    2**10: [8, 5, 5, 5],
    2**12: [7, 5, 5, 5, 5],
    2**14: [8, 8, 8, 6, 5],
    2**16: [8, 8, 8, 5, 5, 5],
}


def fsq_levels(owner: str, levels: list[int] | None, codebook_size: int | None) -> list[int]:
    """``levels`` as given, or the paper's recommendation for ``codebook_size`` (``owner`` names
    the quantizer in errors)."""
    if levels is None and codebook_size is None:
        codebook_size = 2**10
    if levels is not None and codebook_size is not None:
        raise ConfigError(f"{owner}: give levels or codebook_size, not both")
    if levels is None:
        try:
            check_choice(owner, "codebook_size", codebook_size, RECOMMENDED_LEVELS)
        except ConfigError as error:
            raise ConfigError(f"{error}; or give levels=[...]") from None
        return list(RECOMMENDED_LEVELS[codebook_size])
    if not isinstance(levels, list | tuple) or not levels:
        raise ConfigError(f"{owner}: levels must be a non-empty list of integers of at least 2, got {levels!r}")
    checked = [check_int(owner, f"levels[{index}]", level, minimum=2) for index, level in enumerate(levels)]
    check_codebook_size(owner, f"levels {checked}", math.prod(checked))
    return checked


class FSQ(BottleneckQuantizer):
    """Rounds each of ``len(levels)`` projected dimensions to its grid."""

    name = "fsq"

    # codebook_size only chooses levels, which the options record
    options_excluded = ("codebook_size",)

    def __init__(
        self,
        input_dim: int,
        bottleneck_dim: int = 64,
        levels: list[int] | None = None,
        codebook_size: int | None = None,
    ) -> None:
        super().__init__(input_dim, bottleneck_dim)
        self.levels = fsq_levels(self.name, levels, codebook_size)
        self.code_radix = math.prod(self.levels)
        # The library needs preserve_symmetry for a level of 2 (a grid of {-1, 1}).
        self.library = LibraryFSQ(levels=self.levels, dim=bottleneck_dim, preserve_symmetry=2 in self.levels)

    @property
    def bits_per_vector(self) -> float:
        return sum(math.log2(level) for level in self.levels)

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, codes = self.library(z)
        return quantized, codes, z.new_zeros(())

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.library.indices_to_codes(codes)
