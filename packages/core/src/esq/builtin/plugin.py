"""Core's built-in plugin: the pipelines esq ships and ``esq cache``, registered through
esq-core's entry point like any plugin's (as pytest's own plugins are)."""

from __future__ import annotations

from typing import Any

from esq import PipelineSpec, hookimpl


@hookimpl
def esq_pipelines() -> list[PipelineSpec]:
    from esq.builtin.pipelines import demo, squeeze, visualize
    from esq.builtin.pipelines.degradation import pipeline as degradation
    from esq.builtin.pipelines.similarity import pipeline as similarity

    return [
        PipelineSpec(
            name="demo",
            config=demo.DemoConfig,
            run=demo.run,
            check=demo.check,
            summary="The default job: baseline and quantizers trained on synthetic shapes; IoU, bits, similarity",
        ),
        PipelineSpec(
            name="degradation",
            config=degradation.DegradationConfig,
            run=degradation.run,
            check=degradation.check,
            summary="Which distribution metric on which features rises monotonically with image degradation",
        ),
        PipelineSpec(
            name="squeeze",
            config=squeeze.SqueezeConfig,
            run=squeeze.run_squeeze,
            check=squeeze.check_squeeze,
            summary="Train a quantizer and head on a frozen segmentation backbone; IoU, bits, compression",
        ),
        PipelineSpec(
            name="baseline",
            config=squeeze.BaselineConfig,
            run=squeeze.run_baseline,
            check=squeeze.check_baseline,
            summary="Train the segmentation head alone on the frozen backbone (no quantizer)",
        ),
        PipelineSpec(
            name="visualize",
            config=visualize.VisualizeConfig,
            run=visualize.run,
            check=visualize.check,
            summary="Best and worst samples of a quantized model against its baseline (per-sample IoU)",
        ),
        PipelineSpec(
            name="similarity",
            config=similarity.SimilarityConfig,
            run=similarity.run,
            check=similarity.check,
            summary="Similarity metrics between original and quantized features, per checkpoint or two files",
        ),
    ]


@hookimpl
def esq_commands(cli: Any) -> None:
    from esq.builtin.cache_command import cache

    cli.add_command(cache)
