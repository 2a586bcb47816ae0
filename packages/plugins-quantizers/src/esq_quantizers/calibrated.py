"""What the calibrated baselines (``scalar``, ``binary``) share: statistics fitted on training
features by ``calibrate(x)`` (no gradient), no trainable parameters, a zero loss.

A subclass sets ``code_radix``, registers its statistics as buffers (so ``state_dict`` and
checkpoints keep them) and implements ``_fit`` (a ``(N, d)`` matrix to statistics),
``_codes`` (``(b, n, d)`` tokens to ``(b, n, d)`` integer codes) and ``_values`` (codes back to
tokens). Each dimension gets one code, so ``codes_per_vector = input_dim``.

Used without ``calibrate`` (inside Lightning training, say), a quantizer calibrates itself on
its first training-mode forward batch. Eval-mode forwards and ``encode`` never calibrate (a
validation sanity check must not fit the statistics): before any calibration they use the
defaults each subclass documents.
"""

from __future__ import annotations

from typing import Any

import torch

from esq import DataError
from esq_quantizers.base import BottleneckQuantizer


class CalibratedQuantizer(BottleneckQuantizer):
    """One integer code per dimension, from statistics of training features."""

    def __init__(self, input_dim: int, bottleneck_dim: int | None = None) -> None:
        super().__init__(input_dim, input_dim)
        self.bottleneck_dim = bottleneck_dim  # accepted, like every quantizer's, and means nothing here
        self.codes_per_vector = input_dim
        self.register_buffer("calibrated_", torch.tensor(False))

    # -- what subclasses provide -------------------------------------------------------------
    def _fit(self, matrix: torch.Tensor) -> None:
        """Set the statistics from ``matrix`` (``(N, input_dim)``, float32, no gradient)."""
        raise NotImplementedError

    def _codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(b, n, d)`` tokens -> ``(b, n, d)`` int64 codes in ``[0, code_radix)``."""
        raise NotImplementedError

    def _values(self, codes: torch.Tensor) -> torch.Tensor:
        """``(b, n, d)`` codes -> ``(b, n, d)`` float32 tokens."""
        raise NotImplementedError

    # -- the interface -----------------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        """Whether ``calibrate`` (or a first training-mode forward) has fitted the statistics."""
        return bool(self.calibrated_)

    def feature_tokens(self, x: Any) -> torch.Tensor:
        """``x`` as ``(b, n, input_dim)`` float32 tokens: an ``(N, input_dim)`` matrix, tokens or maps."""
        if torch.is_tensor(x) and x.ndim == 2:
            x = x.unsqueeze(0)
        return self._tokens(x)

    def calibrate(self, x: Any) -> CalibratedQuantizer:
        """Fit the statistics on training features ``x`` (``(N, d)``, ``(b, n, d)`` or
        ``(b, d, h, w)``), without gradient; returns the quantizer. Calling it again refits."""
        with torch.no_grad():
            matrix = self.feature_tokens(x).detach().reshape(-1, self.input_dim)
            self._fit(matrix)
            self.calibrated_.fill_(True)
        return self

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.training and not self.calibrated:
            self.calibrate(z)
        with torch.no_grad():
            codes = self._codes(z.detach())
            values = self._values(codes)
        quantized = z + (values - z).detach()  # straight-through in training; the values in eval
        return quantized, self._one_code(codes), z.new_zeros(())

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        codes = codes.long()
        return self._values(codes.unsqueeze(-1) if self.codes_per_vector == 1 else codes)

    def _one_code(self, codes: torch.Tensor) -> torch.Tensor:
        # one dimension, one code: (b, n), as every quantizer with one code per vector gives
        return codes.squeeze(-1) if self.codes_per_vector == 1 else codes

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(codes) or codes.is_floating_point() or codes.is_complex():
            kind = codes.dtype if torch.is_tensor(codes) else type(codes).__name__
            raise DataError(f"{self.name}: codes must be integers from {self.name}.encode(), got {kind}")
        return codes.long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes from ``encode`` back to features in the input's layout."""
        codes = self._check_codes(codes)
        if self.codes_per_vector > 1 and codes.shape[-1] != self.codes_per_vector:
            raise DataError(
                f"{self.name}: expected {self.codes_per_vector} codes per vector (the last axis), "
                f"got shape {tuple(codes.shape)}"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.code_radix):
            raise DataError(f"{self.name}: codes must lie in [0, {self.code_radix}), got {codes.min()}…{codes.max()}")
        return super().decode(codes)
