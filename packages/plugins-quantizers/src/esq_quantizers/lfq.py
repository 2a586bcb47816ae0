"""Lookup-free quantization (Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is Key
to Visual Generation"), via ``LFQ``.

Each of log2(codebook_size) projected dimensions becomes its sign: a vector costs
log2(codebook_size) bits. An entropy loss keeps the codes diverse.
"""

from __future__ import annotations

import math

import torch
from vector_quantize_pytorch import LFQ as LibraryLFQ

from esq import ConfigError, check_bool, check_int, check_number
from esq_quantizers.base import BottleneckQuantizer, check_codebook_size, pick


class LFQ(BottleneckQuantizer):
    """Binary (sign) codes with an entropy penalty."""

    name = "lfq"

    def __init__(
        self,
        input_dim: int,
        bottleneck_dim: int = 64,
        codebook_size: int = 2**10,
        entropy_loss_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        spherical: bool = False,
    ) -> None:
        super().__init__(input_dim, bottleneck_dim)
        self.codebook_size = check_int(self.name, "codebook_size", codebook_size, minimum=2)
        if codebook_size & (codebook_size - 1):
            lower = 2 ** math.floor(math.log2(codebook_size))
            raise ConfigError(
                f"lfq: codebook_size must be a power of two, got {codebook_size}; nearest: {lower} or {lower * 2}"
            )
        check_codebook_size(self.name, f"codebook_size {codebook_size} would", codebook_size)
        self.entropy_loss_weight = check_number(self.name, "entropy_loss_weight", entropy_loss_weight, minimum=0)
        self.diversity_gamma = check_number(self.name, "diversity_gamma", diversity_gamma, minimum=0)
        self.spherical = check_bool(self.name, "spherical", spherical)
        self.code_radix = codebook_size
        self.library = LibraryLFQ(
            dim=bottleneck_dim,
            **pick(self.options, "codebook_size", "entropy_loss_weight", "diversity_gamma", "spherical"),
        )

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, codes, loss = self.library(z)
        return quantized, codes, loss

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.library.indices_to_codes(codes)
