"""``esq weights [BACKBONE] [--json] [--check]``: the files ``weights="default"`` reads, where
each must be put, and whether it is there, so an offline machine can be prepared in advance."""

from __future__ import annotations

from typing import Any

import click

from esq import Plugins, plugin_options, print_json


def weight_rows(spec: Any) -> list[dict[str, Any]]:
    """One row per pretrained file of ``spec``'s backbone class (``pretrained_files()``)."""
    target = spec.factory.resolve() if hasattr(spec.factory, "resolve") else spec.factory
    files_of = getattr(target, "pretrained_files", None)
    if files_of is None:
        return [{"backbone": spec.name, "status": "not listed by its plugin"}]
    files = files_of()
    if not files:
        return [{"backbone": spec.name, "status": "random init only"}]
    rows = []
    for file in files:
        found = file.find()
        rows.append(
            {
                "backbone": spec.name,
                "status": "present" if found else "missing",
                "file": str(found or file.path),
                "source": file.source,
            }
        )
    return rows


@click.command("weights")
@click.argument("backbone", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--check", is_flag=True, help="Exit with status 1 when a listed file is missing.")
@plugin_options
def weights(backbone: str | None, as_json: bool, check: bool, plugins: Plugins) -> None:
    """Where each backbone's pretrained weights go (weights="default"), and whether they are there."""
    registry = plugins.registry("backbones")
    specs = [registry.spec(backbone)] if backbone else registry.specs()
    rows = [row for spec in specs for row in weight_rows(spec)]
    if as_json:
        print_json(rows)
    else:
        click.echo(
            'Files weights="default" reads (esq never downloads: put each at the path shown, or pass weights=PATH):'
        )
        width = max(len(row["backbone"]) for row in rows)
        for row in rows:
            click.echo(f"{row['backbone']:<{width}}  {row['status']:<8}  {row.get('file', '')}".rstrip())
            if row.get("source") and row["status"] != "present":
                click.echo(f"{'':<{width}}  download: {row['source']}")
    if check and any(row["status"] == "missing" for row in rows):
        raise SystemExit(1)
