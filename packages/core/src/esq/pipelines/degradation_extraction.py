"""The backbone half of ``esq run degradation`` (and of ``esq cache build``): raw activations of
every layer the configurations need, on the reference set, the clean evaluation set and every
degraded level, through the activation cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esq.results import RunContext


def weights_identity(options: dict[str, Any]) -> Any:
    """A weights file is known by its path, size and modification time; other values as given."""
    weights = options.get("weights")
    if isinstance(weights, str) and weights not in ("none", "default") and Path(weights).is_file():
        stat = Path(weights).stat()
        return {"path": str(Path(weights).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return weights


def open_sets(config: Any, context: RunContext) -> tuple[Any, Any]:
    """The reference images and the evaluation images after them (disjoint)."""
    from esq.imagesets import open_images

    reference = open_images(
        config.images,
        config.n_references,
        config.image_size,
        config.seed,
        on_unreadable=config.on_unreadable,
        log=context.log,
    )
    evaluation = open_images(
        config.images,
        config.n_evaluations,
        config.image_size,
        config.seed,
        offset=config.n_references,
        on_unreadable=config.on_unreadable,
        log=context.log,
    )
    context.log.info("reference images: %s", reference.description)
    return reference, evaluation


def build_backbone(config: Any, name: str, context: RunContext) -> tuple[Any, dict[str, Any]]:
    """The backbone (random initialisation seeded by ``config.seed``) and its cache identity."""
    import torch

    from esq import registry

    spec = registry("backbones").spec(name)
    options = dict(config.backbone_options.get(name, {}))
    torch.manual_seed(config.seed)
    backbone = registry("backbones").create(name, **options).to(config.device).eval()
    described = dict(getattr(backbone, "options", options))
    if described.get("weights", "none") == "none":
        context.log.warning(
            '%s: random-initialised weights; for pretrained ones set backbone_options.%s.weights = "default"',
            name,
            name,
        )
    identity = {
        "backbone": name,
        "distribution": spec.distribution,
        "version": spec.version,
        "options": described,
        "weights": weights_identity(described),
        "seed": config.seed,
        "preprocess": repr(getattr(backbone, "preprocess", None)),
    }
    return backbone, identity


def extract_backbone(
    config: Any, name: str, degradations: dict[str, Any], context: RunContext
) -> tuple[Any, dict[str, Any]]:
    """``(backbone, activations)``: ``activations["reference"]`` and ``["clean"]`` map each layer
    to its chunks, ``activations[degradation][level]`` likewise."""
    from esq import registry
    from esq.cache import ActivationCache, cached_activations
    from esq.pipelines.degradation import layer_configs

    reference, evaluation = open_sets(config, context)
    backbone, identity = build_backbone(config, name, context)
    layers = list(dict.fromkeys(layer for group in layer_configs(config, backbone).values() for layer in group))
    cache = ActivationCache(config.cache_dir, config.cache_dtype) if config.cache else None

    def gather(label: str, images: Any, count: int, degradation: dict[str, Any] | None, load: Any) -> Any:
        def extract(start: int, stop: int, wanted: list[str]) -> dict[str, Any]:
            batch = backbone.preprocess(load(start, stop))
            features = backbone.features(batch, wanted, batch_size=config.batch_size)
            return {layer: tensor.float().cpu().numpy() for layer, tensor in features.items()}

        keys = {
            layer: {
                **identity,
                "layer": layer,
                "set": "reference" if images is reference else "evaluation",
                "images": images.fingerprint,
                "degradation": degradation,
            }
            for layer in layers
        }
        return cached_activations(cache, keys, count, extract, label=f"{name} {label}", log=context.log)

    activations: dict[str, Any] = {
        "reference": gather("reference", reference, len(reference), None, reference.load),
        "clean": gather("clean evaluation", evaluation, len(evaluation), None, evaluation.load),
    }
    steps = [(degradation, level) for degradation in degradations for level in degradations[degradation].levels]
    for degradation_name, level in context.progress(steps, f"{name}: degraded sets"):
        degradation = degradations[degradation_name]
        spec = registry("degradations").spec(config.degradations[degradation_name]["type"])
        described = {
            "type": spec.name,
            "version": spec.version,
            "options": getattr(degradation, "options", {}),
            "level": level,
            "seed": config.seed,
        }

        def load(start: int, stop: int, degradation: Any = degradation, level: Any = level) -> Any:
            return degradation.apply(evaluation.load(start, stop), level, config.seed, first_index=start)

        activations.setdefault(degradation_name, {})[level] = gather(
            f"{degradation_name} level {level}", evaluation, len(evaluation), described, load
        )
    return backbone, activations
