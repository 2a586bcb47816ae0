"""``check_quantizer``: the protocol of quantizers (needs torch)."""

from __future__ import annotations

import math
from typing import Any

from esq.components import Quantizer, QuantizerOutput
from esq.errors import EsqError
from esq.specs import QuantizerSpec
from esq.testing.common import build, ensure, expect_rejected, rebuild


def _check_output(name: str, output: Any, shape: tuple[int, ...]) -> None:
    import torch

    ensure(
        isinstance(output, QuantizerOutput),
        f"{name}: forward returned {type(output).__name__}, expected QuantizerOutput",
    )
    ensure(
        tuple(output.quantized.shape) == shape,
        f"{name}: output shape {tuple(output.quantized.shape)} != input shape {shape}",
    )
    ensure(torch.is_tensor(output.loss) and output.loss.ndim == 0, f"{name}: loss must be one scalar tensor")
    ensure(bool(torch.isfinite(output.loss)), f"{name}: loss {output.loss} is not finite")
    ensure(isinstance(output.stats, dict), f"{name}: stats must be a dict")
    for key, value in output.stats.items():
        ensure(
            isinstance(value, float) and math.isfinite(value),
            f"{name}: stats[{key!r}] = {value!r} is not a finite float",
        )


def check_quantizer(spec: QuantizerSpec, input_dim: int = 16, **options: Any) -> None:
    """Check a quantizer built as ``spec.factory(input_dim=input_dim, **options)``.

    Token ``(b, n, d)`` and map ``(b, d, h, w)`` inputs keep their shape; ``loss`` is a finite
    scalar and ``stats`` finite floats; in eval mode ``decode(encode(x))`` equals
    ``forward(x).quantized`` exactly and repeats; ``bits_per_vector`` and
    ``compression_ratio`` agree; a wrong feature dimension is rejected (``EsqError`` or
    ``ValueError``); a rebuild from ``options`` under the same seed gives the same output.
    """
    import torch

    torch.manual_seed(0)
    quantizer = build(spec, {"input_dim": input_dim, **options}, Quantizer)
    ensure(quantizer.options.get("input_dim") == input_dim, f"{spec.name}: options must record input_dim")
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 5, input_dim, generator=generator)
    maps = torch.randn(2, input_dim, 3, 4, generator=generator)
    quantizer.train()
    for features in (tokens, maps):
        _check_output(spec.name, quantizer(features), tuple(features.shape))
    quantizer.eval()
    with torch.no_grad():
        for features in (tokens, maps):
            quantized = quantizer(features).quantized
            ensure(
                torch.equal(quantizer.decode(quantizer.encode(features)), quantized),
                f"{spec.name}: in eval mode decode(encode(x)) differs from forward(x).quantized",
            )
            ensure(
                torch.equal(quantizer(features).quantized, quantized), f"{spec.name}: eval forward is not repeatable"
            )
    bits = quantizer.bits_per_vector
    ensure(bits > 0, f"{spec.name}: bits_per_vector must be positive, got {bits}")
    ratio = quantizer.compression_ratio(input_dim)
    ensure(
        math.isclose(ratio, input_dim * 32 / bits),
        f"{spec.name}: compression_ratio({input_dim}) = {ratio}, expected {input_dim * 32 / bits}",
    )
    wrong = torch.randn(2, 5, input_dim + 1)
    expect_rejected(
        spec.name, f"features of dimension {input_dim + 1}", lambda: quantizer(wrong), (EsqError, ValueError)
    )
    torch.manual_seed(2)
    first = build(spec, {"input_dim": input_dim, **options}, Quantizer).eval()
    torch.manual_seed(2)
    second = rebuild(spec, first, Quantizer).eval()
    with torch.no_grad():
        ensure(
            torch.equal(first(tokens).quantized, second(tokens).quantized),
            f"{spec.name}: a quantizer rebuilt from its `options` under the same seed gives another output",
        )
