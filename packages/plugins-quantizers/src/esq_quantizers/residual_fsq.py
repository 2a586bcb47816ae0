"""Residual finite scalar quantization (FSQ levels stacked over residuals, as in Mentzer et al.
2023 combined with SoundStream's residual scheme), via ``ResidualFSQ``.

``num_quantizers`` FSQ levels, each of prod(levels) codes: num_quantizers · Σ log2(levels[i])
bits per vector.
"""

from __future__ import annotations

import math

import torch
from vector_quantize_pytorch import ResidualFSQ as LibraryResidualFSQ

from esq import check_int
from esq_quantizers.base import BottleneckQuantizer
from esq_quantizers.fsq import fsq_levels


class ResidualFSQ(BottleneckQuantizer):
    """FSQ over successive residuals."""

    name = "residual_fsq"

    options_excluded = ("codebook_size",)  # it only chooses levels, which the options record

    def __init__(
        self,
        input_dim: int,
        bottleneck_dim: int = 64,
        levels: list[int] | None = None,
        codebook_size: int | None = None,
        num_quantizers: int = 4,
    ) -> None:
        super().__init__(input_dim, bottleneck_dim)
        self.levels = fsq_levels(self.name, levels, codebook_size)
        self.num_quantizers = check_int(self.name, "num_quantizers", num_quantizers, minimum=1)
        self.codes_per_vector, self.code_radix = num_quantizers, math.prod(self.levels)
        self.library = LibraryResidualFSQ(levels=self.levels, num_quantizers=num_quantizers, dim=bottleneck_dim)

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, codes = self.library(z)
        return quantized, codes, z.new_zeros(())

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.library.get_output_from_indices(codes)
