"""Vector quantization with an EMA codebook (van den Oord et al. 2017, "Neural Discrete
Representation Learning"; EMA updates from Razavi et al. 2019), via ``VectorQuantize``.

Each bottleneck vector is replaced by its nearest of ``codebook_size`` codewords: log2(K) bits.
"""

from __future__ import annotations

import torch
from vector_quantize_pytorch import VectorQuantize

from esq import ConfigError
from esq_quantizers.base import BottleneckQuantizer, options_from, pick, positive_int

# The options of an EMA VQ codebook, shared with rvq.
EMA_VQ_OPTIONS = ("codebook_size", "decay", "commitment_weight", "kmeans_init", "threshold_ema_dead_code")


def check_ema_options(name: str, decay: float, commitment_weight: float, threshold_ema_dead_code: int) -> None:
    if not 0 < decay < 1:
        raise ConfigError(f"{name}: decay must be between 0 and 1, got {decay}")
    if commitment_weight < 0:
        raise ConfigError(f"{name}: commitment_weight must be at least 0, got {commitment_weight}")
    if threshold_ema_dead_code < 0:
        raise ConfigError(f"{name}: threshold_ema_dead_code must be at least 0, got {threshold_ema_dead_code}")


class VQ(BottleneckQuantizer):
    """VQ-VAE quantizer with EMA codebook updates and dead-code replacement."""

    name = "vq"

    def __init__(
        self,
        input_dim: int,
        bottleneck_dim: int = 64,
        codebook_size: int = 512,
        decay: float = 0.99,
        commitment_weight: float = 0.25,
        kmeans_init: bool = False,
        threshold_ema_dead_code: int = 2,
    ) -> None:
        super().__init__(input_dim, bottleneck_dim, options_from(locals()))
        self.code_radix = positive_int("codebook_size", codebook_size, self.name)
        check_ema_options(self.name, decay, commitment_weight, threshold_ema_dead_code)
        self.library = VectorQuantize(dim=bottleneck_dim, **pick(self.options, *EMA_VQ_OPTIONS))

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.library(z)

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.library.get_output_from_indices(codes)
