"""The ``identity`` quantizer: features pass unchanged, stored as float32 (32 bits per dimension).

A baseline with the same interface as the real quantizers. (Training's ``quantizer="none"``
means no quantizer at all; ``identity`` is a quantizer that changes nothing.)
"""

from __future__ import annotations

import torch

from esq import QuantizerOutput
from esq_quantizers.base import BottleneckQuantizer


class Identity(BottleneckQuantizer):
    """No quantization; the "codes" are the float32 features themselves."""

    name = "identity"
    code_dtype = "float32"  # how ``pack`` stores the codes: raw float32 values

    def __init__(self, input_dim: int, bottleneck_dim: int | None = None) -> None:
        super().__init__(input_dim, input_dim)
        self.bottleneck_dim = bottleneck_dim  # accepted, like every quantizer's, and means nothing here

    @property
    def bits_per_vector(self) -> float:
        return 32.0 * self.input_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self._tokens(x)
        return tokens if x.ndim == 3 else self._codes_layout(tokens, x)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes if codes.ndim == 3 else codes.movedim(-1, 1)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        codes = self.encode(x)
        return QuantizerOutput(self.decode(codes).clone(), codes, x.new_zeros(()), {})
