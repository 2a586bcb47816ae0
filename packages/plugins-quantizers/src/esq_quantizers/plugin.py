"""The hooks esq calls. torch and vector-quantize-pytorch load only when a quantizer is built."""

from __future__ import annotations

from esq import QuantizerSpec, hookimpl, lazy


@hookimpl
def esq_quantizers() -> list[QuantizerSpec]:
    return [
        QuantizerSpec(
            name="vq",
            factory=lazy("esq_quantizers.vq:VQ"),
            summary="Vector quantization, EMA codebook (codebook_size 512)",
        ),
        QuantizerSpec(
            name="fsq",
            factory=lazy("esq_quantizers.fsq:FSQ"),
            summary="Finite scalar quantization (levels, or codebook_size)",
        ),
        QuantizerSpec(
            name="lfq",
            factory=lazy("esq_quantizers.lfq:LFQ"),
            summary="Lookup-free (sign) quantization with an entropy loss",
        ),
        QuantizerSpec(
            name="rvq",
            factory=lazy("esq_quantizers.rvq:RVQ"),
            summary="Residual VQ (num_quantizers 4 × codebook_size 256)",
        ),
        QuantizerSpec(
            name="none",
            factory=lazy("esq_quantizers.identity:Identity"),
            summary="No quantization: the float32 baseline, 32 bits per dimension",
        ),
    ]
