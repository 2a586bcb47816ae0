"""Quantizers whose codes are the features themselves at a float precision (``identity``:
float32, ``float16``): ``pack`` stores the values raw (``code_dtype``), so ``bits_per_vector``
is the precision's width times ``input_dim``."""

from __future__ import annotations

import torch

from esq import DataError, QuantizerOutput
from esq_quantizers.base import BottleneckQuantizer


class RawFloats(BottleneckQuantizer):
    """Features cast to ``code_dtype`` and back; no training, no parameters, ``loss`` 0.

    ``bottleneck_dim`` is accepted, as every quantizer's, and means nothing here: the features
    themselves are stored. In training the output is straight-through.
    """

    code_dtype = "float32"  # how ``pack`` stores the codes, a torch dtype's name

    def __init__(self, input_dim: int, bottleneck_dim: int | None = None) -> None:
        super().__init__(input_dim, input_dim)
        self.bottleneck_dim = bottleneck_dim  # accepted, like every quantizer's, and means nothing here

    @property
    def _dtype(self) -> torch.dtype:
        return getattr(torch, self.code_dtype)

    @property
    def bits_per_vector(self) -> float:
        return float(torch.finfo(self._dtype).bits * self.input_dim)

    def _cast(self, tokens: torch.Tensor) -> torch.Tensor:
        largest, limit = float(tokens.abs().max()) if tokens.numel() else 0.0, torch.finfo(self._dtype).max
        if largest > limit:
            raise DataError(
                f"{self.name}: the features reach {largest:.6g}, beyond {self.code_dtype}'s largest value {limit:g}; "
                "scale the features down or use the quantizer 'identity' (float32)"
            )
        return tokens.detach().to(self._dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``code_dtype`` codes: ``(b, n, d)`` for tokens, ``(b, h, w, d)`` for maps."""
        return self._codes_layout(self._cast(self._tokens(x)), x)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes from ``encode`` back to float32 features in the input's layout."""
        values = codes.float()
        return values if codes.ndim == 3 else values.movedim(-1, 1)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """``decode(encode(x))``, a new tensor; in training the gradient passes straight through."""
        tokens = self._tokens(x)
        codes = self._cast(tokens)
        rounded = codes.to(torch.float32, copy=True)
        if self.training:
            rounded = tokens + (rounded - tokens).detach()
        return QuantizerOutput(self._as_maps(rounded, x), self._codes_layout(codes, x), tokens.new_zeros(()), {})
