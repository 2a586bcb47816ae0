"""Registries: one per component kind, built from what the loaded plugins' hooks return.

>>> from esq import MetricSpec, hookimpl
>>> from esq.testing import registry_of
>>> class Plugin:
...     @hookimpl
...     def esq_metrics(self):
...         return [MetricSpec(name="zero", factory=lambda: 0.0, summary="Always zero",
...                            kind="distribution", higher_is_better=False)]
>>> metrics = registry_of("metrics", Plugin())
>>> metrics.names(), metrics.create("zero")
(['zero'], 0.0)
>>> metrics.spec("zeros")
Traceback (most recent call last):
...
esq.errors.UnknownNameError: unknown metric 'zeros' (did you mean 'zero'?); installed metrics: zero
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable
from typing import Any

from esq.errors import ConfigError, PluginError, UnknownNameError
from esq.names import did_you_mean
from esq.specs import (
    BackboneSpec,
    DegradationSpec,
    MetricSpec,
    PipelineSpec,
    QuantizerSpec,
    RetrieverSpec,
    Spec,
)

KINDS: dict[str, tuple[str, type[Spec]]] = {
    "backbones": ("esq_backbones", BackboneSpec),
    "quantizers": ("esq_quantizers", QuantizerSpec),
    "metrics": ("esq_metrics", MetricSpec),
    "degradations": ("esq_degradations", DegradationSpec),
    "retrievers": ("esq_retrievers", RetrieverSpec),
    "pipelines": ("esq_pipelines", PipelineSpec),
}

# Where users get the components of a kind when none is installed.
PROVIDERS = {
    "backbones": "esq-backbones",
    "quantizers": "esq-quantizers",
    "metrics": "esq-metrics",
    "degradations": "esq-metrics",
    "retrievers": "esq-clip",
    "pipelines": "esq-core",
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UnknownNameError(
            f"unknown component kind {kind!r}{did_you_mean(kind, KINDS)}; kinds are {', '.join(KINDS)}"
        )
    return kind


def _same(first: Spec, second: Spec) -> bool:
    return first == second and all(
        getattr(first, f.name) is getattr(second, f.name)
        for f in dataclasses.fields(first)
        if callable(getattr(first, f.name))
    )


class Registry:
    """The components of one kind: ``names()``, ``spec(name)``, ``create(name, **options)``."""

    def __init__(self, kind: str, specs: Iterable[Spec]) -> None:
        self.kind = check_kind(kind)
        self._specs: dict[str, Spec] = {}
        for spec in specs:
            self._add(spec)

    @classmethod
    def build(cls, kind: str, plugins: Iterable[Any]) -> Registry:
        """Call the hook of ``kind`` on each plugin (``PluginInfo``) and collect the specs."""
        hook, spec_type = KINDS[check_kind(kind)]
        specs = []
        for info in plugins:
            implementation = getattr(info.plugin, hook, None)
            if implementation is None:
                continue
            try:
                returned = list(implementation() or [])
            except Exception as error:
                raise PluginError(
                    f"plugin {info.name!r} ({info.distribution}) failed in {hook}(): {type(error).__name__}: {error}"
                ) from error
            for spec in returned:
                if not isinstance(spec, spec_type):
                    raise PluginError(
                        f"plugin {info.name!r} ({info.distribution}): {hook}() returned "
                        f"{type(spec).__name__}, expected {spec_type.__name__}"
                    )
                specs.append(dataclasses.replace(spec, distribution=info.distribution, version=info.version))
        return cls(kind, specs)

    def _add(self, spec: Spec) -> None:
        existing = self._specs.get(spec.name)
        if existing is None:
            self._specs[spec.name] = spec
        elif not _same(existing, spec):
            raise PluginError(
                f"Conflicting plugins found for `{self.kind}`: {spec.name!r} provided by: "
                f"{existing.distribution} {existing.version}, {spec.distribution} {spec.version}"
            )

    @property
    def singular(self) -> str:
        return self.kind[:-1]

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[Spec]:
        return [self._specs[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def spec(self, name: str) -> Spec:
        """The spec called ``name``; an unknown name lists close matches and what is installed."""
        try:
            return self._specs[name]
        except KeyError:
            pass
        if not self._specs:
            raise UnknownNameError(
                f"unknown {self.singular} {name!r}: no {self.kind} are installed; "
                f"install {PROVIDERS[self.kind]} or a plugin that provides {self.kind}"
            )
        raise UnknownNameError(
            f"unknown {self.singular} {name!r}{did_you_mean(name, self._specs)}; "
            f"installed {self.kind}: {', '.join(self.names())}"
        )

    def create(self, name: str, **options: Any) -> Any:
        """Build component ``name``; an option its factory does not take is an error."""
        spec = self.spec(name)
        check_options(f"{self.singular} {name!r}", spec.builder(), options)
        return spec.build(**options)


def accepted_options(builder: Any) -> tuple[list[str], bool]:
    """The keyword names ``builder`` takes, and whether it takes ``**kwargs`` too."""
    if dataclasses.is_dataclass(builder):
        return [f.name for f in dataclasses.fields(builder) if f.init], False
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return [], True
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)


def check_options(what: str, builder: Any, options: dict[str, Any]) -> None:
    names, open_ended = accepted_options(builder)
    if open_ended:
        return
    for option in options:
        if option not in names:
            accepted = ", ".join(names) if names else "none"
            raise ConfigError(f"{what} has no option {option!r}{did_you_mean(option, names)}; options: {accepted}")
