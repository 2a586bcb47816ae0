"""``esq list [KIND] [--json]``: the installed components, with the plugin that provides each."""

from __future__ import annotations

from typing import Any

import click

from esq.commands import plugin_options
from esq.output import print_json, print_table
from esq.plugins import Plugins
from esq.registries import KINDS


def component_rows(registry: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": spec.name,
            "plugin": f"{spec.distribution} {spec.version}".strip(),
            **spec.facts(),
            "summary": spec.summary,
        }
        for spec in registry.specs()
    ]


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(list(KINDS)))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@plugin_options
def list_components(kind: str | None, as_json: bool, plugins: Plugins) -> None:
    """List installed components: all kinds, or one KIND."""
    kinds = [kind] if kind else list(KINDS)
    listing = {name: component_rows(plugins.registry(name)) for name in kinds}
    if as_json:
        print_json(listing[kind] if kind else listing)
        return
    for name, rows in listing.items():
        if rows:
            print_table(name, rows)
        else:
            click.echo(f"{name}: none installed")
