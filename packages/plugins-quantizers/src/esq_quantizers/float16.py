"""The ``float16`` quantizer: features rounded to half precision, 16 bits per dimension.

The first baseline a practitioner tries: every value cast to IEEE 754 half precision (11
significant bits, largest finite value 65504) and back. The codes are the float16 values
themselves; ``pack`` stores them raw (``code_dtype``), 2 bytes a value.
"""

from __future__ import annotations

import torch

from esq import DataError, QuantizerOutput
from esq_quantizers.base import BottleneckQuantizer

FLOAT16_MAX = 65504.0


class Float16(BottleneckQuantizer):
    """Half-precision features: ``bits_per_vector = 16 · input_dim``; no training, no parameters.

    ``bottleneck_dim`` is accepted, as every quantizer's, and means nothing here: the features
    themselves are rounded. In training the output is straight-through.

    >>> import torch
    >>> quantizer = Float16(input_dim=4)
    >>> quantizer.bits_per_vector, quantizer.compression_ratio(4)
    (64.0, 2.0)
    >>> quantizer.encode(torch.tensor([[[1.0, 0.1, -2.5, 3.0]]])).dtype
    torch.float16
    """

    name = "float16"
    code_dtype = "float16"  # how ``pack`` stores the codes: raw float16 values

    def __init__(self, input_dim: int, bottleneck_dim: int | None = None) -> None:
        super().__init__(input_dim, input_dim)
        self.bottleneck_dim = bottleneck_dim  # accepted, like every quantizer's, and means nothing here

    @property
    def bits_per_vector(self) -> float:
        return 16.0 * self.input_dim

    def _half(self, tokens: torch.Tensor) -> torch.Tensor:
        largest = float(tokens.abs().max())
        if largest > FLOAT16_MAX:
            raise DataError(
                f"{self.name}: the features reach {largest:.6g}, beyond float16's largest value {FLOAT16_MAX:g}; "
                "scale the features down or use the quantizer 'identity' (float32)"
            )
        return tokens.detach().to(torch.float16)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """float16 codes: ``(b, n, d)`` for tokens, ``(b, h, w, d)`` for maps."""
        return self._codes_layout(self._half(self._tokens(x)), x)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes from ``encode`` back to float32 features in the input's layout."""
        values = codes.float()
        return values if codes.ndim == 3 else values.movedim(-1, 1)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """``decode(encode(x))``; in training the gradient passes straight through; ``loss`` 0."""
        tokens = self._tokens(x)
        codes = self._half(tokens)
        rounded = codes.float()
        if self.training:
            rounded = tokens + (rounded - tokens).detach()
        return QuantizerOutput(self._as_maps(rounded, x), self._codes_layout(codes, x), tokens.new_zeros(()), {})
