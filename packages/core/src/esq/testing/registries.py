"""Registries over chosen plugin objects only, for tests and docs (no entry points read)."""

from __future__ import annotations

from esq.plugins import PluginInfo
from esq.registry import Registry


def registry_of(kind: str, *plugins: object) -> Registry:
    """The registry of ``kind`` that ``plugins`` (modules or objects with hook functions) give.

    >>> from esq import pipelines
    >>> registry_of("pipelines", pipelines).names()
    ['demo']
    """
    infos = [
        PluginInfo(
            name=getattr(p, "__name__", type(p).__name__), distribution="(test)", version="", source="test", plugin=p
        )
        for p in plugins
    ]
    return Registry.build(kind, infos)
