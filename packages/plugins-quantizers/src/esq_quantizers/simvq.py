"""SimVQ (Zhu et al. 2024, "Addressing Representation Collapse in Vector Quantized Models with
One Linear Layer"), via ``SimVQ``: a frozen random codebook reparameterised by a learned linear
map, which keeps every code in use. log2(codebook_size) bits per vector.
"""

from __future__ import annotations

import torch
from vector_quantize_pytorch import SimVQ as LibrarySimVQ

from esq import check_int, check_number
from esq_quantizers.base import BottleneckQuantizer, check_codebook_size


class SimVQ(BottleneckQuantizer):
    """Nearest code of a linearly transformed frozen codebook."""

    name = "simvq"

    def __init__(
        self, input_dim: int, bottleneck_dim: int = 64, codebook_size: int = 512, commitment_weight: float = 1.0
    ) -> None:
        super().__init__(input_dim, bottleneck_dim)
        self.codebook_size = check_int(self.name, "codebook_size", codebook_size, minimum=2)
        check_codebook_size(self.name, f"codebook_size {codebook_size} would", codebook_size)
        self.commitment_weight = check_number(self.name, "commitment_weight", commitment_weight, minimum=0)
        self.code_radix = codebook_size
        self.library = LibrarySimVQ(
            dim=bottleneck_dim, codebook_size=codebook_size, commitment_weight=commitment_weight
        )

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.library(z)

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.library.indices_to_codes(codes)
