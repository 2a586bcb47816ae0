"""The ``none`` quantizer: features pass unchanged, stored as float32 (32 bits per dimension).

A baseline with the same interface as the real quantizers.
"""

from __future__ import annotations

import torch

from esq import QuantizerOutput
from esq_quantizers.base import BottleneckQuantizer


class Identity(BottleneckQuantizer):
    """No quantization; the "codes" are the float32 features themselves."""

    name = "none"

    def __init__(self, input_dim: int) -> None:
        super().__init__(input_dim, input_dim, {})
        self.options = {"input_dim": input_dim}

    @property
    def bits_per_vector(self) -> float:
        return 32.0 * self.input_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self._tokens(x)
        return tokens if x.ndim == 3 else self._codes_layout(tokens, x)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes if codes.ndim == 3 else codes.movedim(-1, 1)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        self._tokens(x)
        return QuantizerOutput(x.float(), self.encode(x), x.new_zeros(()), {})
