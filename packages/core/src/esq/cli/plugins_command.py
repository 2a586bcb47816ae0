"""``esq plugins [--format FORMAT]``: every plugin found, its version, status, hooks and components."""

from __future__ import annotations

from typing import Any

import click

from esq.commands import plugin_options
from esq.output import format_options, print_json, print_rows
from esq.plugins import PluginInfo, Plugins


def provided(info: PluginInfo) -> dict[str, list[str]]:
    """The components ``info``'s plugin provides, by kind."""
    return {kind: [spec.name for spec in specs] for kind, specs in info.specs.items() if specs}


def plugin_row(info: PluginInfo) -> dict[str, Any]:
    status = info.status if not info.error else f"{info.status}: {info.error}"
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "source": info.source,
        "status": status,
        "hooks": info.hooks,
        "provides": provided(info),
    }


def _provides_text(provides: dict[str, list[str]]) -> str:
    return "; ".join(f"{kind}: {', '.join(names)}" for kind, names in provides.items())


@click.command("plugins")
@format_options
@plugin_options
def plugins(output_format: str, plugins: Plugins) -> None:
    """List plugins: name, version, status, hooks and the components each provides."""
    rows = [plugin_row(info) for info in plugins.infos]
    if output_format == "json":
        print_json(rows)
        return
    print_rows(
        "plugins",
        [{**row, "provides": _provides_text(row["provides"])} for row in rows],
        output_format,
        ["name", "distribution", "version", "status", "hooks", "provides"],
    )
