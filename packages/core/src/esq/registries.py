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

import contextlib
import dataclasses
import importlib.util
import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from esq.errors import ConfigError, EsqError, PluginError, UnknownNameError
from esq.names import did_you_mean
from esq.specs import KINDS, Spec

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
        """The specs of ``kind`` that the plugins (``PluginInfo``, loaded) provide."""
        return cls(kind, [spec for info in plugins for spec in info.specs.get(kind, [])])

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

    def check(self, name: str, **options: Any) -> None:
        """Whatever ``create(name, **options)`` would refuse, found without keeping the component:
        unknown or missing options, and the values or files its constructor refuses (a weights
        file that is not there). It is built on torch's meta device, so a large network costs
        neither memory nor time; one that cannot be built there is built for real.

        >>> from esq.testing import registry_of
        >>> from esq import MetricSpec, hookimpl
        >>> class Plugin:
        ...     @hookimpl
        ...     def esq_metrics(self):
        ...         return [MetricSpec(name="top", factory=lambda k=1: k, summary="k", kind="similarity",
        ...                            higher_is_better=True)]
        >>> registry_of("metrics", Plugin()).check("top", n=2)
        Traceback (most recent call last):
        ...
        esq.errors.ConfigError: metric 'top' has no option 'n'; options: k
        """
        spec = self.spec(name)
        check_options(f"{self.singular} {name!r}", spec.builder(), options)
        try:
            with _on_meta_device():
                spec.build(**options)
            return
        except EsqError:
            raise
        except Exception:
            pass
        self.create(name, **options)

    def create(self, name: str, **options: Any) -> Any:
        """Build component ``name``; an option its factory does not take is an error."""
        spec = self.spec(name)
        check_options(f"{self.singular} {name!r}", spec.builder(), options)
        try:
            return spec.build(**options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{self.singular} {name!r} with options {options}: {error}") from error


@contextlib.contextmanager
def _on_meta_device() -> Iterator[None]:
    """Tensors made inside go to torch's meta device (no memory, no arithmetic), when torch is
    installed; without torch, nothing changes."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    with torch.device("meta"):
        yield


def check_options(what: str, builder: Any, options: dict[str, Any]) -> None:
    """An option ``builder`` does not take, or a required one missing, is a ``ConfigError``."""
    try:
        parameters = list(inspect.signature(builder).parameters.values())
    except (TypeError, ValueError):
        return
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [p.name for p in named]
    listed = ", ".join(names) or "none"
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        for option in options:
            if option not in names:
                raise ConfigError(f"{what} has no option {option!r}{did_you_mean(option, names)}; options: {listed}")
    missing = [p.name for p in named if p.default is p.empty and p.name not in options]
    if missing:
        raise ConfigError(f"{what} needs option {missing[0]!r}; options: {listed}")
