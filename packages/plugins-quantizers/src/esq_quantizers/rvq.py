"""Residual vector quantization (Zeghidour et al. 2021, "SoundStream"), via ``ResidualVQ``.

``num_quantizers`` VQ levels each quantize what the previous ones left: a vector costs
num_quantizers · log2(codebook_size) bits. The loss is the sum of the levels' commitment losses.
"""

from __future__ import annotations

import torch
from vector_quantize_pytorch import ResidualVQ

from esq import check_bool, check_int
from esq_quantizers.base import BottleneckQuantizer, pick
from esq_quantizers.vq import EMA_VQ_OPTIONS, check_ema_options


class RVQ(BottleneckQuantizer):
    """A stack of EMA VQ levels over successive residuals."""

    name = "rvq"

    def __init__(
        self,
        input_dim: int,
        bottleneck_dim: int = 64,
        num_quantizers: int = 4,
        codebook_size: int = 256,
        shared_codebook: bool = False,
        quantize_dropout: bool = False,
        decay: float = 0.99,
        commitment_weight: float = 0.25,
        kmeans_init: bool = False,
        threshold_ema_dead_code: int = 2,
    ) -> None:
        super().__init__(input_dim, bottleneck_dim)
        self.num_quantizers = check_int(self.name, "num_quantizers", num_quantizers, minimum=1)
        self.shared_codebook = check_bool(self.name, "shared_codebook", shared_codebook)
        self.quantize_dropout = check_bool(self.name, "quantize_dropout", quantize_dropout)
        self.codebook_size, self.decay, self.commitment_weight = codebook_size, decay, commitment_weight
        self.kmeans_init, self.threshold_ema_dead_code = kmeans_init, threshold_ema_dead_code
        check_ema_options(self)
        self.codes_per_vector, self.code_radix = num_quantizers, codebook_size
        self.library = ResidualVQ(
            dim=bottleneck_dim,
            **pick(self.options, "num_quantizers", "shared_codebook", "quantize_dropout", *EMA_VQ_OPTIONS),
        )

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, codes, losses = self.library(z)
        return quantized, codes, losses.sum()

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.library.get_output_from_indices(codes)
