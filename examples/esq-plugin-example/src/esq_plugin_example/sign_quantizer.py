"""Sign quantizer: the signs of a fixed Gaussian random projection (Charikar 2002, SimHash).

Each vector becomes ``bits`` sign bits of ``W x`` (``W``: bits × input_dim, fixed, seeded);
a linear decoder, the only trained part, maps the ±1 code back to ``input_dim``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from esq import DataError, QuantizerOutput, WithOptions, check_int


class SignQuantizer(WithOptions, nn.Module):
    """``forward(x)``: ``(b, n, d)`` tokens or ``(b, d, h, w)`` maps to the same shape."""

    def __init__(self, input_dim: int, bits: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.input_dim = check_int("random_projection", "input_dim", input_dim, minimum=1)
        self.bits = check_int("random_projection", "bits", bits, minimum=1)
        self.seed = check_int("random_projection", "seed", seed)
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(bits, input_dim, generator=generator) / bits**0.5)
        self.decoder = nn.Linear(bits, input_dim)

    @property
    def bits_per_vector(self) -> float:
        return float(self.bits)

    def compression_ratio(self, feature_dim: int) -> float:
        return feature_dim * 32 / self.bits_per_vector

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (3, 4) or x.shape[-1 if x.ndim == 3 else 1] != self.input_dim:
            raise DataError(
                f"random_projection expects (b, n, {self.input_dim}) tokens or (b, {self.input_dim}, h, w) maps, "
                f"got shape {tuple(x.shape)}"
            )
        return x if x.ndim == 3 else rearrange(x, "b d h w -> b (h w) d")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes: bool, ``(b, n, bits)`` or ``(b, h, w, bits)``."""
        codes = self._tokens(x).float() @ self.projection.T > 0
        return codes if x.ndim == 3 else rearrange(codes, "b (h w) k -> b h w k", h=x.shape[2])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        decoded = self.decoder(codes.float() * 2 - 1)
        return decoded if codes.ndim == 3 else rearrange(decoded, "b h w d -> b d h w")

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        codes = self.encode(x)
        flat = codes.reshape(-1, self.bits).float()
        stats = {"bit_balance": float(flat.mean()), "distinct_codes": float(torch.unique(flat, dim=0).shape[0])}
        return QuantizerOutput(self.decode(codes), codes, x.new_zeros(()), stats)
