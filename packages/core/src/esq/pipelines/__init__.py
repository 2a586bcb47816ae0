"""Core's built-in plugin: the pipelines esq ships, registered like any plugin's."""

from __future__ import annotations

from esq.hookspecs import hookimpl
from esq.specs import PipelineSpec


@hookimpl
def esq_pipelines() -> list[PipelineSpec]:
    from esq.pipelines import degradation, demo, similarity, squeeze, visualize

    return [
        PipelineSpec(
            name="demo",
            config=demo.DemoConfig,
            run=demo.run,
            summary="The default job: baseline and quantizers trained on synthetic shapes; IoU, bits, similarity",
        ),
        PipelineSpec(
            name="degradation",
            config=degradation.DegradationConfig,
            run=degradation.run,
            summary="Which distribution metric on which features rises monotonically with image degradation",
        ),
        PipelineSpec(
            name="squeeze",
            config=squeeze.SqueezeConfig,
            run=squeeze.run_squeeze,
            summary="Train a quantizer and head on a frozen segmentation backbone; IoU, bits, compression",
        ),
        PipelineSpec(
            name="baseline",
            config=squeeze.BaselineConfig,
            run=squeeze.run_baseline,
            summary="Train the segmentation head alone on the frozen backbone (no quantizer)",
        ),
        PipelineSpec(
            name="visualize",
            config=visualize.VisualizeConfig,
            run=visualize.run,
            summary="Best and worst samples of a quantized model against its baseline (per-sample IoU)",
        ),
        PipelineSpec(
            name="similarity",
            config=similarity.SimilarityConfig,
            run=similarity.run,
            summary="Similarity metrics between original and quantized features, per checkpoint or two files",
        ),
    ]
