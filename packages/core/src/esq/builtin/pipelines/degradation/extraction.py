"""The backbone half of ``esq run degradation`` (and of ``esq cache build``): raw activations of
every layer the configurations need, on the reference set, the clean evaluation set and every
degraded level, through the activation cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esq import RunContext


def weights_identity(options: dict[str, Any]) -> Any:
    """A weights file is known by its path, size and modification time; other values as given."""
    weights = options.get("weights")
    if isinstance(weights, str) and weights not in ("none", "default") and Path(weights).is_file():
        stat = Path(weights).stat()
        return {"path": str(Path(weights).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return weights


def open_sets(config: Any, context: RunContext) -> tuple[Any, Any]:
    """The reference images and the evaluation images after them (disjoint)."""
    from esq.builtin.data.image_sets import open_images

    def images(count: int, offset: int) -> Any:
        return open_images(
            config.images,
            count,
            config.image_size,
            config.seed,
            offset=offset,
            on_unreadable=config.on_unreadable,
            log=context.log,
        )

    n_reference, n_evaluation = config.mode_value("n_reference"), config.mode_value("n_evaluation")
    reference, evaluation = images(n_reference, 0), images(n_evaluation, n_reference)
    context.log.info("reference images: %s", reference.description)
    return reference, evaluation


class LazyBackbone:
    """The backbone, built on first use with its random initialisation seeded by ``seed``: a run
    that the cache answers entirely never builds it."""

    def __init__(self, config: Any, name: str, backbones: Any) -> None:
        self.config, self.name, self.backbones = config, name, backbones
        self._backbone: Any = None

    def get(self) -> Any:
        if self._backbone is None:
            import torch

            torch.manual_seed(self.config.seed)
            options = self.config.backbone_options.get(self.name, {})
            self._backbone = self.backbones.create(self.name, **options).to(self.config.device).eval()
        return self._backbone


def default_layer(backbone: Any) -> str | None:
    """The layer a backbone reads by default: its ``default_layer``, or what ``resolve_layers()``
    gives for no request; ``None`` for a backbone with neither (the protocol does not ask for one)."""
    if getattr(backbone, "default_layer", None) is not None:
        return backbone.default_layer
    if callable(getattr(backbone, "resolve_layers", None)):
        return backbone.resolve_layers(None)[0]
    return None


def declares_default_layer(factory: Any) -> bool:
    """Whether the class ``factory`` builds can have a default layer: it or a base class defines
    ``default_layer`` or ``resolve_layers``, or assigns ``self.default_layer`` in ``__init__``.
    ``True`` when that cannot be told without building it (a plain function)."""
    import inspect

    target = factory.resolve() if callable(getattr(factory, "resolve", None)) else factory
    if not inspect.isclass(target):
        return True
    for klass in target.__mro__:
        code = getattr(vars(klass).get("__init__"), "__code__", None)
        if {"default_layer", "resolve_layers"} & (set(vars(klass)) | set(code.co_names if code else ())):
            return True
    return False


def resolve_layers(backbone: Any, requested: list[str | int]) -> list[str]:
    """Layer names for names or indices into ``layers()``; through the backbone's own
    ``resolve_layers`` when it has one."""
    from esq import ConfigError

    if callable(getattr(backbone, "resolve_layers", None)):
        return backbone.resolve_layers(list(requested))
    names = backbone.layers()
    resolved = []
    for layer in requested:
        if isinstance(layer, int) and not isinstance(layer, bool) and -len(names) <= layer < len(names):
            resolved.append(names[layer])
        elif layer in names:
            resolved.append(layer)
        else:
            raise ConfigError(
                f"layer_configs: {type(backbone).__name__} has no layer {layer!r}; its layers: {', '.join(names)}"
            )
    return list(dict.fromkeys(resolved))


def layer_configs(config: Any, backbone: Any, name: str = "backbone") -> dict[str, list[str]]:
    """The layer configurations for ``backbone``: as configured, or the mode's choice: quick the
    default layer; medium three depths (a third of the way, two thirds, the default layer);
    full every layer alone and those three together."""
    from esq import ConfigError

    if config.layer_configs is not None:
        return {group: resolve_layers(backbone, list(layers)) for group, layers in config.layer_configs.items()}
    names = backbone.layers()
    default = default_layer(backbone)
    if default is None:
        raise ConfigError(no_default_layer(name, config.mode, names))
    depths = list(dict.fromkeys([names[len(names) // 3], names[2 * len(names) // 3], default]))
    if config.mode == "quick":
        return {default: [default]}
    if config.mode == "medium":
        return {layer: [layer] for layer in depths}
    return {**{layer: [layer] for layer in names}, "aggregated_" + "+".join(depths): depths}


def no_default_layer(name: str, mode: str, names: list[str] | None = None) -> str:
    layers = f" (its layers: {', '.join(names)})" if names else ""
    example = names[-1] if names else "LAYER"
    return (
        f"backbone {name!r} has no default layer, which mode {mode!r} picks layers from; "
        f"name its layers with layer_configs{layers}, e.g. --set 'layer_configs={{{example}=[\"{example}\"]}}'"
    )


def backbone_features(network: Any, batch: Any, layers: list[str], batch_size: int) -> dict[str, Any]:
    """``network.features(batch, layers)`` in batches of ``batch_size`` (by the backbone itself
    when its ``features`` takes ``batch_size=``, as esq's own do)."""
    import inspect

    import torch

    try:
        takes_batch_size = "batch_size" in inspect.signature(network.features).parameters
    except (TypeError, ValueError):
        takes_batch_size = False
    if takes_batch_size:
        return network.features(batch, layers, batch_size=batch_size)
    parts = [network.features(batch[start : start + batch_size], layers) for start in range(0, len(batch), batch_size)]
    return {layer: torch.cat([part[layer] for part in parts]) for layer in parts[0]}


def backbone_facts(config: Any, name: str, cache: Any, backbone: LazyBackbone) -> dict[str, Any]:
    """What the cache keys and the layer configurations need from the backbone: its options as
    built, its preprocessing and the layers of each configuration. Kept as a cache note, so a
    later run reads them without building the backbone."""
    spec = backbone.backbones.spec(name)
    options = config.backbone_options.get(name, {})
    request = {
        "backbone": name,
        "distribution": spec.distribution,
        "version": spec.version,
        "options": options,
        "weights": weights_identity(options),
        "seed": config.seed,
        "mode": config.mode,
        "layer_configs": config.layer_configs,
    }
    facts = cache.read_note(request) if cache is not None else None
    if facts is None:
        built = backbone.get()
        facts = {
            "options": dict(getattr(built, "options", options)),
            "preprocess": repr(getattr(built, "preprocess", None)),
            "layer_groups": layer_configs(config, built, name),
        }
        if cache is not None:
            cache.write_note(request, facts)
    return {**request, **facts}


def pretrained_hint(name: str, context: RunContext) -> str:
    """How to give backbone ``name`` pretrained weights: ``"default"`` where it knows its files
    (``pretrained_files``), else a weights file of one's own."""
    factory = context.registry("backbones").spec(name).factory
    backbone_class = factory.resolve() if hasattr(factory, "resolve") else factory
    if getattr(backbone_class, "pretrained_files", lambda: [])():
        return f'for pretrained ones set backbone_options.{name}.weights = "default"'
    return f'it has no pretrained files esq knows: set backbone_options.{name}.weights = "PATH" to a file of your own'


def extract_backbone(
    config: Any, name: str, degradations: dict[str, Any], context: RunContext
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """``(layer_groups, activations)``: ``activations["reference"]`` and ``["clean"]`` map each
    layer to its chunks, ``activations[degradation][level]`` likewise."""
    from esq.builtin.cache import ActivationCache, cached_activations

    reference, evaluation = open_sets(config, context)
    cache = ActivationCache(config.cache_dir, config.cache_dtype) if config.cache else None
    backbone = LazyBackbone(config, name, context.registry("backbones"))
    facts = backbone_facts(config, name, cache, backbone)
    if facts["options"].get("weights", "none") == "none":
        context.log.warning("%s: random-initialised weights; %s", name, pretrained_hint(name, context))
    identity = {
        "backbone": name,
        "distribution": facts["distribution"],
        "version": facts["version"],
        "options": facts["options"],
        "weights": weights_identity(facts["options"]),
        "seed": config.seed,
        "preprocess": facts["preprocess"],
    }
    layer_groups = facts["layer_groups"]
    layers = list(dict.fromkeys(layer for group in layer_groups.values() for layer in group))

    def gather(label: str, images: Any, degradation: dict[str, Any] | None, load: Any, progress: Any = None) -> Any:
        def extract(start: int, stop: int, wanted: list[str]) -> dict[str, Any]:
            network = backbone.get()
            batch = network.preprocess(load(start, stop))
            features = backbone_features(network, batch, wanted, config.batch_size)
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
        return cached_activations(
            cache,
            keys,
            len(images),
            extract,
            label=f"{name} {label}",
            log=context.log,
            about={"source": images.source},
            progress=progress,
        )

    # Progress, never nested: the reference set (the largest) chunk by chunk, then one step per
    # evaluation set, clean and degraded.
    activations: dict[str, Any] = {"reference": gather("reference", reference, None, reference.load, context.progress)}
    steps = [("clean", None)]
    steps += [(degradation, level) for degradation in degradations for level in degradations[degradation].levels]
    for degradation_name, level in context.progress(steps, f"{name}: evaluation sets, clean and degraded"):
        if degradation_name == "clean":
            activations["clean"] = gather("clean evaluation", evaluation, None, evaluation.load)
            continue
        degradation = degradations[degradation_name]
        spec = context.registry("degradations").spec(config.degradations[degradation_name]["type"])
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
            f"{degradation_name} level {level}", evaluation, described, load
        )
    return layer_groups, activations
