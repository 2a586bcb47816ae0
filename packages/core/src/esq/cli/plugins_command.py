"""``esq plugins [--json]``: every plugin found, its version, status, hooks and components."""

from __future__ import annotations

from typing import Any

import click

from esq.cli.main import plugin_options
from esq.cli.output import print_json, print_table
from esq.errors import EsqError
from esq.plugins import PluginInfo, use_plugins
from esq.registry import KINDS, Registry


def provided(info: PluginInfo) -> dict[str, list[str]] | str:
    """The components ``info``'s plugin provides, by kind (or the error its hooks raised)."""
    if info.status != "loaded":
        return {}
    try:
        found = {kind: Registry.build(kind, [info]).names() for kind in KINDS}
    except EsqError as error:
        return str(error)
    return {kind: names for kind, names in found.items() if names}


def plugin_row(info: PluginInfo) -> dict[str, Any]:
    status = info.status if not info.error else f"{info.status}: {info.error}"
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "source": info.source,
        "status": status,
        "hooks": info.hooks(),
        "provides": provided(info),
    }


def _provides_text(provides: dict[str, list[str]] | str) -> str:
    if isinstance(provides, str):
        return provides
    return "; ".join(f"{kind}: {', '.join(names)}" for kind, names in provides.items())


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@plugin_options
def plugins(as_json: bool, plugin_values: tuple[str, ...]) -> None:
    """List plugins: name, version, status, hooks and the components each provides."""
    rows = [plugin_row(info) for info in use_plugins(plugin_values).infos]
    if as_json:
        print_json(rows)
        return
    print_table(
        "plugins",
        [{**row, "provides": _provides_text(row["provides"])} for row in rows],
        ["name", "distribution", "version", "status", "hooks", "provides"],
    )
