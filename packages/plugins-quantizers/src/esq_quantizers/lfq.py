"""Lookup-free quantization (Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is Key
to Visual Generation"), via ``LFQ``.

Each of log2(codebook_size) projected dimensions becomes its sign: a vector costs
log2(codebook_size) bits. An entropy loss keeps the codes diverse.
"""

from __future__ import annotations

import math

import torch
from vector_quantize_pytorch import LFQ as LibraryLFQ

from esq import ConfigError
from esq_quantizers.base import BottleneckQuantizer, options_from, pick, positive_int


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
        positive_int("codebook_size", codebook_size, "lfq")
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            lower = 2 ** max(1, math.floor(math.log2(codebook_size)))
            raise ConfigError(
                f"lfq: codebook_size must be a power of two, got {codebook_size}; nearest: {lower} or {lower * 2}"
            )
        super().__init__(input_dim, bottleneck_dim, options_from(locals()))
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
