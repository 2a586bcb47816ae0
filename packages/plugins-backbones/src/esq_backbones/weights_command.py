"""``esq weights [BACKBONE] [--format FORMAT] [--check]``: the files ``weights="default"`` reads, where
each must be put, and whether it is there, so an offline machine can be prepared in advance."""

from __future__ import annotations

from typing import Any

import click

from esq import Plugins, format_options, plugin_options, print_rows


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
@click.option("--check", is_flag=True, help="Exit with status 1 when a listed file is missing.")
@format_options
@plugin_options
def weights(backbone: str | None, check: bool, output_format: str, plugins: Plugins) -> None:
    """Where each backbone's pretrained weights go (weights="default"), and whether they are there."""
    registry = plugins.registry("backbones")
    specs = [registry.spec(backbone)] if backbone else registry.specs()
    rows = [row for spec in specs for row in weight_rows(spec)]
    if output_format == "table":
        click.echo(
            'Files weights="default" reads (esq never downloads: put each at the path shown, or pass weights=PATH):'
        )
        width = max(len(row["backbone"]) for row in rows)
        for row in rows:
            click.echo(f"{row['backbone']:<{width}}  {row['status']:<8}  {row.get('file', '')}".rstrip())
            if row.get("source") and row["status"] != "present":
                click.echo(f"{'':<{width}}  download: {row['source']}")
    else:
        print_rows("weights", rows, output_format)
    if check and any(row["status"] == "missing" for row in rows):
        raise SystemExit(1)
