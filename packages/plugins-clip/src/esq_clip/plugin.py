"""The hooks esq calls. torch, cn-clip, lmdb and faiss load only when a component is built."""

from __future__ import annotations

from typing import Any

from esq import BackboneSpec, PipelineSpec, RetrieverSpec, hookimpl, lazy


@hookimpl
def esq_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="chinese_clip",
            factory=lazy("esq_clip.models:ChineseCLIP"),
            summary="Chinese-CLIP image and text encoders (cn-clip configs), L2-normalised embeddings",
        )
    ]


@hookimpl
def esq_retrievers() -> list[RetrieverSpec]:
    return [
        RetrieverSpec(
            name="exact",
            factory=lazy("esq_clip.retrievers:ExactRetriever"),
            summary="Exact inner-product top-k: blocked matrix products within a memory budget, ties by smaller id",
        ),
        RetrieverSpec(
            name="faiss",
            factory=lazy("esq_clip.retrievers:FaissRetriever"),
            summary="faiss IndexFlatIP (exact), same tie rule; needs esq-clip[faiss]",
        ),
    ]


@hookimpl
def esq_pipelines() -> list[PipelineSpec]:
    from esq_clip import pipeline

    return [
        PipelineSpec(
            name="retrieval",
            config=pipeline.RetrievalConfig,
            run=pipeline.run,
            check=pipeline.check,
            summary="Chinese-CLIP retrieval: features, top-k, Recall@1/5/10 both ways, official files, quantizers",
        )
    ]


@hookimpl
def esq_commands(cli: Any) -> None:
    from esq_clip.lmdb_command import clip

    cli.add_command(clip)
