"""Vector quantization with an EMA codebook (van den Oord et al. 2017, "Neural Discrete
Representation Learning"; EMA updates from Razavi et al. 2019), via ``VectorQuantize``.

Each bottleneck vector is replaced by its nearest of ``codebook_size`` codewords: log2(K) bits.
"""

from __future__ import annotations

import torch
from vector_quantize_pytorch import VectorQuantize

from esq import check_bool, check_int, check_number
from esq_quantizers.base import BottleneckQuantizer, check_codebook_size, pick

# The options of an EMA VQ codebook, shared with rvq.
EMA_VQ_OPTIONS = ("codebook_size", "decay", "commitment_weight", "kmeans_init", "threshold_ema_dead_code")


def check_ema_options(quantizer: BottleneckQuantizer) -> None:
    """The EMA codebook options ``quantizer`` (a ``vq`` or ``rvq``) stores, checked."""
    name = quantizer.name
    check_int(name, "codebook_size", quantizer.codebook_size, minimum=2)
    check_codebook_size(name, f"codebook_size {quantizer.codebook_size} would", quantizer.codebook_size)
    check_number(name, "decay", quantizer.decay, minimum=0, maximum=1, exclusive=("minimum", "maximum"))
    check_number(name, "commitment_weight", quantizer.commitment_weight, minimum=0)
    check_bool(name, "kmeans_init", quantizer.kmeans_init)
    check_number(name, "threshold_ema_dead_code", quantizer.threshold_ema_dead_code, minimum=0)


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
        super().__init__(input_dim, bottleneck_dim)
        self.codebook_size, self.decay, self.commitment_weight = codebook_size, decay, commitment_weight
        self.kmeans_init, self.threshold_ema_dead_code = kmeans_init, threshold_ema_dead_code
        check_ema_options(self)
        self.code_radix = codebook_size
        self.library = VectorQuantize(dim=bottleneck_dim, **pick(self.options, *EMA_VQ_OPTIONS))

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.library(z)

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.library.get_output_from_indices(codes)
