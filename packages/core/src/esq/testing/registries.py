"""Registries over chosen plugin objects only, for tests and docs (no entry points read)."""

from __future__ import annotations

from esq.plugins import PluginInfo, admit, new_manager
from esq.registries import Registry


def registry_of(kind: str, *plugins: object) -> Registry:
    """The registry of ``kind`` that ``plugins`` (modules or objects with hook functions) give.

    Each plugin goes through the same checks as an installed one, and a broken one raises
    ``PluginError``.

    >>> from esq.builtin import plugin
    >>> registry_of("pipelines", plugin).names()
    ['baseline', 'degradation', 'demo', 'similarity', 'squeeze', 'visualize']
    """
    manager = new_manager()
    infos = [
        admit(
            manager,
            plugin,
            PluginInfo(
                name=getattr(plugin, "__name__", type(plugin).__name__),
                distribution="(test)",
                version="",
                source="test",
            ),
        )
        for plugin in plugins
    ]
    return Registry.build(kind, infos)
