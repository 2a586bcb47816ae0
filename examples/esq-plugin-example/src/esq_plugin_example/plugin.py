"""The hooks esq calls. Nothing heavy is imported here: `esq.lazy` imports the quantizer's
module (and torch with it) only when a quantizer is built."""

from __future__ import annotations

from esq import MetricSpec, QuantizerSpec, hookimpl, lazy


@hookimpl
def esq_quantizers() -> list[QuantizerSpec]:
    return [
        QuantizerSpec(
            name="random_projection",
            factory=lazy("esq_plugin_example.sign_quantizer:SignQuantizer"),
            summary="Sign bits of a fixed random projection (SimHash) with a learned linear decoder",
        )
    ]


@hookimpl
def esq_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="mean_cosine",
            factory=lazy("esq_plugin_example.cosine:MeanCosine"),
            summary="Mean cosine similarity between paired rows of equal dimension",
            kind="similarity",
            higher_is_better=True,
            range=(-1.0, 1.0),
        )
    ]
