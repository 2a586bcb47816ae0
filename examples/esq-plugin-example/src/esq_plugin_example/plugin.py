"""The hooks esq calls. Nothing heavy is imported here: torch loads only when a factory runs."""

from __future__ import annotations

from typing import Any

from esq import MetricSpec, QuantizerSpec, hookimpl


def _sign_quantizer(input_dim: int, bits: int = 64, seed: int = 0) -> Any:
    from esq_plugin_example.sign_quantizer import SignQuantizer

    return SignQuantizer(input_dim=input_dim, bits=bits, seed=seed)


@hookimpl
def esq_quantizers() -> list[QuantizerSpec]:
    return [
        QuantizerSpec(
            name="random_projection",
            factory=_sign_quantizer,
            summary="Sign bits of a fixed random projection (SimHash) with a learned linear decoder",
        )
    ]


@hookimpl
def esq_metrics() -> list[MetricSpec]:
    from esq_plugin_example.cosine import MeanCosine

    return [
        MetricSpec(
            name="mean_cosine",
            factory=MeanCosine,
            summary="Mean cosine similarity between paired rows of equal dimension",
            kind="similarity",
            higher_is_better=True,
            range=(-1.0, 1.0),
        )
    ]
