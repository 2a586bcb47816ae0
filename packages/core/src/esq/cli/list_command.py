"""``esq list [KIND] [--format FORMAT]``: the installed components, with the plugin that provides each."""

from __future__ import annotations

from typing import Any

import click

from esq.commands import plugin_options
from esq.output import format_options, print_json, print_rows, print_table
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
@format_options
@plugin_options
def list_components(kind: str | None, output_format: str, plugins: Plugins) -> None:
    """List installed components: all kinds, or one KIND."""
    kinds = [kind] if kind else list(KINDS)
    listing = {name: component_rows(plugins.registry(name)) for name in kinds}
    if output_format == "json":
        print_json(listing[kind] if kind else listing)
        return
    if output_format != "table":  # one table: of KIND, or of every kind told apart by a column
        every = listing[kind] if kind else [{"kind": name, **row} for name, rows in listing.items() for row in rows]
        print_rows(kind or "components", every, output_format)
        return
    for number, (name, rows) in enumerate(listing.items()):
        if number:
            click.echo()
        if rows:
            print_table(name, rows)
        else:
            click.echo(f"{name}: none installed")
