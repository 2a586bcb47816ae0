"""Core's built-in plugin: the pipelines esq ships, registered like any plugin's."""

from __future__ import annotations

from esq.hookspecs import hookimpl
from esq.specs import PipelineSpec


@hookimpl
def esq_pipelines() -> list[PipelineSpec]:
    from esq.pipelines import degradation, demo

    return [
        PipelineSpec(
            name="demo",
            config=demo.DemoConfig,
            run=demo.run,
            summary="Squeeze synthetic embeddings through the installed quantizers; score with similarity metrics",
        ),
        PipelineSpec(
            name="degradation",
            config=degradation.DegradationConfig,
            run=degradation.run,
            summary="Which distribution metric on which features rises monotonically with image degradation",
        ),
    ]
