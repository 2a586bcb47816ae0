"""The ``scalar`` quantizer: each dimension rounded to one of 2^bits levels of its calibrated
range (int8 embedding quantization at ``bits = 8``).

As sentence-transformers' ``quantize_embeddings(precision="int8")``: per-dimension ranges come
from calibration embeddings, and each dimension's range is cut into equal buckets. Here the
range ``[low, high]`` holds ``2^bits`` buckets of width ``(high − low) / 2^bits`` and a value
decodes to its bucket's centre (sentence-transformers steps by ``(high − low) / 255`` and keeps
the integer, so its last bucket holds only ``high``); values outside the range clip to the end
buckets. ``bits_per_vector = bits · input_dim``.
"""

from __future__ import annotations

import math

import torch

from esq import ConfigError, check_choice, check_number
from esq_quantizers.calibrated import CalibratedQuantizer

BITS = (8, 4, 2)
CALIBRATIONS = ("minmax", "percentile")
DEFAULT_PERCENTILE = 99.9


class Scalar(CalibratedQuantizer):
    """Per-dimension uniform quantization over ranges calibrated on training features.

    ``calibration = "minmax"`` takes each dimension's smallest and largest training value;
    ``"percentile"`` the ``100 − percentile`` and ``percentile`` percentiles (nearest rank;
    default 99.9), so rare outliers do not stretch the buckets. Before calibration the range is
    ``[−1, 1]``; a first training-mode forward batch calibrates it (``calibrate`` explains).
    No trainable parameters; ``loss`` is 0; in training the output is straight-through.

    >>> import torch
    >>> quantizer = Scalar(input_dim=3, bits=2).calibrate(torch.tensor([[0.0, 0.0, -4.0], [4.0, 8.0, 4.0]]))
    >>> quantizer.encode(torch.tensor([[[0.9, 8.0, 1.0]]])).tolist()
    [[[0, 3, 2]]]
    >>> quantizer.decode(torch.tensor([[[0, 3, 2]]])).tolist()
    [[[0.5, 7.0, 1.0]]]
    """

    name = "scalar"

    def __init__(
        self,
        input_dim: int,
        bottleneck_dim: int | None = None,
        bits: int = 8,
        calibration: str = "minmax",
        percentile: float | None = None,
    ) -> None:
        super().__init__(input_dim, bottleneck_dim)
        self.bits = check_choice(self.name, "bits", bits, BITS)
        self.calibration = check_choice(self.name, "calibration", calibration, CALIBRATIONS)
        if calibration == "minmax":
            if percentile is not None:
                raise ConfigError(
                    f"{self.name}: percentile is given, but calibration is 'minmax'; "
                    "set calibration = 'percentile' or drop percentile"
                )
        else:
            percentile = DEFAULT_PERCENTILE if percentile is None else percentile
            check_number(self.name, "percentile", percentile, minimum=50, maximum=100, exclusive=("minimum",))
        self.percentile = percentile
        self.code_radix = 2**self.bits
        self.register_buffer("low_", torch.full((input_dim,), -1.0))
        self.register_buffer("width_", torch.full((input_dim,), 2.0 / self.code_radix))

    @property
    def bits_per_vector(self) -> float:
        return float(self.bits * self.input_dim)

    def _fit(self, matrix: torch.Tensor) -> None:
        if self.calibration == "minmax":
            low, high = matrix.min(dim=0).values, matrix.max(dim=0).values
        else:  # nearest-rank percentiles; kthvalue has no size limit (torch.quantile stops at 2^24 values)
            count = matrix.shape[0]
            rank = min(count, max(1, math.ceil(self.percentile / 100 * count)))
            low = matrix.kthvalue(count + 1 - rank, dim=0).values
            high = matrix.kthvalue(rank, dim=0).values
        self.low_.copy_(low)
        self.width_.copy_((high - low) / self.code_radix)

    def _codes(self, tokens: torch.Tensor) -> torch.Tensor:
        # A constant dimension (width 0) has one value: code 0, which decodes to it.
        width = torch.where(self.width_ > 0, self.width_, torch.ones_like(self.width_))
        buckets = torch.floor((tokens - self.low_) / width)
        return buckets.clamp(0, self.code_radix - 1).long()

    def _values(self, codes: torch.Tensor) -> torch.Tensor:
        return self.low_ + (codes.float() + 0.5) * self.width_
