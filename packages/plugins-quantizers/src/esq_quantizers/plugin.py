"""The hooks esq calls. torch and vector-quantize-pytorch load only when a quantizer is built."""

from __future__ import annotations

from esq import QuantizerSpec, hookimpl, lazy

QUANTIZERS = [
    ("vq", "esq_quantizers.vq:VQ", "Vector quantization, EMA codebook (codebook_size 512)"),
    ("fsq", "esq_quantizers.fsq:FSQ", "Finite scalar quantization (levels, or codebook_size)"),
    ("lfq", "esq_quantizers.lfq:LFQ", "Lookup-free (sign) quantization with an entropy loss"),
    ("rvq", "esq_quantizers.rvq:RVQ", "Residual VQ (num_quantizers 4 × codebook_size 256)"),
    ("residual_fsq", "esq_quantizers.residual_fsq:ResidualFSQ", "Residual FSQ (num_quantizers 4 × FSQ levels)"),
    ("simvq", "esq_quantizers.simvq:SimVQ", "SimVQ: a frozen codebook through a learned linear map (512 codes)"),
    ("identity", "esq_quantizers.identity:Identity", "Features unchanged: the float32 baseline, 32 bits per dimension"),
    ("float16", "esq_quantizers.float16:Float16", "Features in half precision: 16 bits per dimension"),
    ("scalar", "esq_quantizers.scalar:Scalar", "Per-dimension calibrated ranges in 2^bits buckets (bits 8, 4 or 2)"),
    ("binary", "esq_quantizers.binary:Binary", "Sign of each (centred, optionally rotated) dimension, Hamming search"),
]


@hookimpl
def esq_quantizers() -> list[QuantizerSpec]:
    pack = lazy("esq_quantizers.storage:pack")
    return [
        QuantizerSpec(name=name, factory=lazy(target), summary=summary, pack=pack)
        for name, target, summary in QUANTIZERS
    ]
