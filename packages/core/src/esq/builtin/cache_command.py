"""``esq cache build | ls | rm``: the activation cache that ``esq run degradation`` reads."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from esq import Plugins, format_options, plugin_options, print_json, print_rows, stderr

CACHE_DIR_HELP = "Cache folder (default: $ESQ_CACHE_DIR, else ~/.cache/esq/activations)."


@click.group("cache")
def cache() -> None:
    """Build, list and remove cached backbone activations."""


def _layer(text: str) -> str | int:
    return int(text) if text.lstrip("-").isdigit() else text


@cache.command("build")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config of esq run degradation.",
)
@click.option("--set", "set_options", multiple=True, metavar="KEY=VALUE", help="Set one option of esq run degradation.")
@click.option("--seed", type=int, help="Seed (image crops, random initialisation, noise).")
@click.option(
    "--mode", type=click.Choice(["quick", "medium", "full"]), help="Sizes and layers as in esq run degradation."
)
@click.option("--backbone", "backbones", multiple=True, help="Backbone (repeatable).")
@click.option("--layers", "layers", multiple=True, help="Layer name or index, each cached alone (repeatable).")
@click.option("--images", help="builtin, synthetic, or an image folder.")
@click.option("--n-reference", type=int, help="Clean reference images.")
@click.option("--n-evaluation", type=int, help="Evaluation images (clean and at every degradation level).")
@click.option("--cache-dir", help=CACHE_DIR_HELP)
@plugin_options
def build(
    config_file: Path | None,
    set_options: tuple[str, ...],
    seed: int | None,
    layers: tuple[str, ...],
    plugins: Plugins,
    **options: Any,
) -> None:
    """Extract and store what esq run degradation with the same options would read."""
    from esq import RunContext, build_config, config_layers
    from esq.builtin.pipelines.degradation.extraction import extract_backbone
    from esq.builtin.pipelines.degradation.pipeline import build_degradations

    spec = plugins.registry("pipelines").spec("degradation")
    if layers:
        options["layer_configs"] = {str(layer): [_layer(layer)] for layer in layers}
    config = build_config(spec.config, config_layers(config_file, set_options, seed, **options), "degradation")
    if not config.cache:
        raise click.UsageError("cache = false in the config: nothing would be stored")
    spec.check_config(config, plugins)
    log = logging.getLogger("esq.cache")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        context = RunContext(Path.cwd(), log, plugins)
        degradations = build_degradations(config, plugins)
        for name in config.backbones:
            extract_backbone(config, name, degradations, context)
    finally:
        log.removeHandler(handler)
    stderr.print("cache ready: esq cache ls lists it", highlight=False)


def _row(entry: Any) -> dict[str, Any]:
    """What ``esq cache ls`` shows of one entry; a damaged one says which file is wrong."""
    from esq import DataError

    folder = {"backbone": entry.directory.parent.parent.name, "layer": entry.directory.parent.name}
    size = round(entry.size_bytes() / 2**20, 2)
    try:
        key = entry.key
        info = entry.info if entry.complete else {}
    except DataError as error:
        return {**folder, "images": None, "count": None, "shape": None, "dtype": None, "MB": size} | {
            "status": f"damaged: {error}; esq cache rm removes it",
            "entry": entry.directory.name,
        }
    degradation = key.get("degradation")
    images = f"{degradation['type']} {degradation['level']}" if isinstance(degradation, dict) else key.get("set")
    return {
        "backbone": key.get("backbone", folder["backbone"]),
        "layer": key.get("layer", folder["layer"]),
        "images": images,
        "count": info.get("count"),
        "shape": info.get("shape"),
        "dtype": key.get("dtype"),
        "MB": size,
        "status": "complete" if entry.complete else f"incomplete ({len(entry.chunk_paths())} chunks)",
        "entry": entry.directory.name,
    }


def _rows(entries: list[Any]) -> list[dict[str, Any]]:
    return [_row(entry) for entry in entries]


@cache.command("ls")
@click.option("--cache-dir", help=CACHE_DIR_HELP)
@format_options
def list_entries(cache_dir: str | None, output_format: str) -> None:
    """List cache entries: backbone, layer, image set, size, complete or not."""
    from esq.builtin.cache import ActivationCache

    store = ActivationCache(cache_dir)
    rows = _rows(store.entries())
    if output_format == "json":
        print_json(rows)
    elif rows:
        columns = [column for column in rows[0] if column != "entry"] if output_format == "table" else None
        print_rows(f"activation cache: {store.root}", rows, output_format, columns)  # the entry folder: not in tables
    else:
        click.echo(f"activation cache {store.root}: empty")


@cache.command("rm")
@click.option("--cache-dir", help=CACHE_DIR_HELP)
@click.option("--backbone", help="Only this backbone's entries.")
@click.option("--layer", help="Only this layer's entries.")
@click.option("--incomplete", is_flag=True, help="Only entries a build left unfinished.")
@click.option("--all", "everything", is_flag=True, help="Every entry (needed when no filter is given).")
def remove(cache_dir: str | None, backbone: str | None, layer: str | None, incomplete: bool, everything: bool) -> None:
    """Remove cache entries."""
    from esq.builtin.cache import ActivationCache, remove_entries

    if not (backbone or layer or incomplete or everything):
        raise click.UsageError("say what to remove: --backbone, --layer, --incomplete, or --all")
    store = ActivationCache(cache_dir)
    rows = {entry: _row(entry) for entry in store.entries()}
    chosen = [
        entry
        for entry, row in rows.items()
        if (backbone is None or str(row["backbone"]) == backbone)
        and (layer is None or str(row["layer"]) == layer)
        and (not incomplete or row["status"] != "complete")
    ]
    size = sum(entry.size_bytes() for entry in chosen)
    removed = remove_entries(chosen)
    click.echo(f"removed {removed} cache entries ({size / 2**20:.1f} MB) from {store.root}")
