"""Spec dataclasses: what a plugin's hook returns to describe one component or pipeline.

A spec is frozen and cheap to build: ``factory`` (or a pipeline's ``run``) may import heavy
libraries when it is called, never when the plugin module is imported.

>>> from esq import MetricSpec
>>> spec = MetricSpec(name="mean_cosine", factory=dict, summary="Mean cosine of paired rows",
...                   kind="similarity", higher_is_better=True, range=(-1.0, 1.0))
>>> spec.name, spec.kind
('mean_cosine', 'similarity')
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from esq.errors import PluginError

NAME_PATTERN = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True, kw_only=True)
class Spec:
    """Fields every spec has. ``distribution`` and ``version`` are filled in by the registry."""

    name: str
    summary: str
    distribution: str = field(default="", compare=False)
    version: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            raise PluginError(
                f"{type(self).__name__} name {self.name!r} is invalid: use lowercase letters, "
                "digits and underscores only"
            )
        if not isinstance(self.summary, str) or not self.summary.strip() or "\n" in self.summary:
            raise PluginError(f"{type(self).__name__} {self.name!r}: summary must be one non-empty line")

    def build(self, **options: Any) -> Any:
        """Build the component (for a pipeline: its config) from keyword options."""
        raise NotImplementedError

    def builder(self) -> Callable[..., Any]:
        """The callable that ``build`` calls, whose signature lists the accepted options."""
        raise NotImplementedError

    def facts(self) -> dict[str, Any]:
        """The kind-specific facts, for ``esq list``."""
        hidden = {f.name for f in dataclasses.fields(Spec)} | {"factory", "run", "config", "check"}
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in hidden and f.metadata.get("fact", True)
        }


@dataclass(frozen=True, kw_only=True)
class ComponentSpec(Spec):
    """A component built by calling ``factory(**options)``."""

    factory: Callable[..., Any]

    def __post_init__(self) -> None:
        super().__post_init__()
        if not callable(self.factory):
            raise PluginError(f"{type(self).__name__} {self.name!r}: factory must be callable")

    def build(self, **options: Any) -> Any:
        return self.factory(**options)

    def builder(self) -> Callable[..., Any]:
        return self.factory


@dataclass(frozen=True, kw_only=True)
class BackboneSpec(ComponentSpec):
    """A backbone (``nn.Module`` with ``preprocess``, ``layers()``, ``features()``, ``feature_dim``).

    ``task`` is ``"features"`` for feature extractors and ``"segmentation"`` for backbones that
    also return logits from ``forward``.
    """

    task: Literal["features", "segmentation"] = "features"


@dataclass(frozen=True, kw_only=True)
class QuantizerSpec(ComponentSpec):
    """A quantizer (``nn.Module`` with ``forward``, ``encode``, ``decode``, ``bits_per_vector``).

    ``pack(codes, quantizer, path)``, where the plugin offers one, writes ``quantizer.encode``'s
    codes to ``path`` in their bit-packed layout and returns the path (esq-quantizers':
    ``esq_quantizers.pack``), so a pipeline or another plugin can store codes without importing
    the plugin.
    """

    pack: Callable[[Any, Any, Any], Any] | None = field(default=None, metadata={"fact": False})


@dataclass(frozen=True, kw_only=True)
class MetricSpec(ComponentSpec):
    """A metric. ``kind`` says what it compares: paired features (``"similarity"``) or two
    samples (``"distribution"``); ``range`` is the interval of possible values."""

    kind: Literal["similarity", "distribution"]
    higher_is_better: bool
    range: tuple[float, float] = (float("-inf"), float("inf"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in ("similarity", "distribution"):
            raise PluginError(f"MetricSpec {self.name!r}: kind {self.kind!r} must be 'similarity' or 'distribution'")
        low, high = self.range
        if not low <= high:
            raise PluginError(f"MetricSpec {self.name!r}: range {self.range!r} is empty")


@dataclass(frozen=True, kw_only=True)
class DegradationSpec(ComponentSpec):
    """An image degradation with ``apply(images, level, seed)`` and ``levels`` (mild to severe)."""


@dataclass(frozen=True, kw_only=True)
class RetrieverSpec(ComponentSpec):
    """A retriever with ``index(keys)`` and ``search(queries, k) -> (scores, ids)``."""

    exact: bool = True


@dataclass(frozen=True, kw_only=True)
class PipelineSpec(Spec):
    """A pipeline: ``run(config, context) -> Results`` over the dataclass ``config``.

    ``build(**options)`` returns the config; the fields of ``config`` are the pipeline's options
    (``--set key=value`` and TOML keys). ``check(config, plugins)``, if given, checks the config
    against the installed components (``plugins.registry(kind)``) and raises ``ConfigError``; the
    runner calls it before it makes the run directory.
    """

    config: type
    run: Callable[..., Any]
    check: Callable[..., None] | None = None

    def check_config(self, config: Any, plugins: Any) -> None:
        """Run ``check`` on ``config`` (nothing to do when the pipeline has none)."""
        if self.check is not None:
            self.check(config, plugins)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not dataclasses.is_dataclass(self.config) or not isinstance(self.config, type):
            raise PluginError(f"PipelineSpec {self.name!r}: config must be a dataclass type")
        if not callable(self.run):
            raise PluginError(f"PipelineSpec {self.name!r}: run must be callable")
        if self.check is not None and not callable(self.check):
            raise PluginError(f"PipelineSpec {self.name!r}: check must be callable")

    def build(self, **options: Any) -> Any:
        return self.config(**options)

    def builder(self) -> Callable[..., Any]:
        return self.config


# Each component kind: the hook that provides it and the spec type that hook returns.
KINDS: dict[str, tuple[str, type[Spec]]] = {
    "backbones": ("esq_backbones", BackboneSpec),
    "quantizers": ("esq_quantizers", QuantizerSpec),
    "metrics": ("esq_metrics", MetricSpec),
    "degradations": ("esq_degradations", DegradationSpec),
    "retrievers": ("esq_retrievers", RetrieverSpec),
    "pipelines": ("esq_pipelines", PipelineSpec),
}
