"""``esq cache build | ls | rm``: the activation cache that ``esq run degradation`` reads."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from esq import Plugins, format_options, plugin_options, print_json, print_rows, stderr

CACHE_DIR_HELP = "Cache folder (default: $ESQ_CACHE_DIR, else ~/.cache/esq/activations)."


@click.group("cache")
def cache() -> None:
    """Build, list and remove cached backbone activations."""


def spread_values(args: list[str], options: tuple[str, ...]) -> list[str]:
    """``args`` with each of ``options`` given once per value: ``--layers 7 9 12`` (every value up
    to the next option, as argparse's ``nargs="+"``; a negative number such as ``-1`` is a value,
    ``-h`` is not) becomes ``--layers 7 --layers 9 --layers 12``, as click's repeatable options
    take them; ``--layers 7,9`` is split at the commas later, and ``--layers=7`` is one value (as
    ``esq run``'s list options take it).

    >>> spread_values(["--layers", "7", "9", "--mode", "quick", "--layers", "-1", "-h"], ("--layers",))
    ['--layers', '7', '--layers', '9', '--mode', 'quick', '--layers', '-1', '-h']
    """
    import re

    spread: list[str] = []
    option, values = None, 0
    for index, argument in enumerate(args):
        if argument == "--":
            return [*spread, *args[index:]]
        if argument.startswith("-") and not re.fullmatch(r"-\d+", argument):
            name, equals, _ = argument.partition("=")
            option, values = (name if name in options and not equals else None), 0  # --layers=7: one value
        elif option is not None:
            if values:
                spread.append(option)
            values += 1
        spread.append(argument)
    return spread


class ManyValuesCommand(click.Command):
    """A command whose options named in ``many_values`` take several values after one flag
    (``--layers 7 9 12``), besides repeating the flag and commas (``--layers 7,9``)."""

    def __init__(self, *args: Any, many_values: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.many_values = many_values

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_values(args, self.many_values))


def split_values(values: tuple[str, ...]) -> list[str]:
    """The values of a many-valued option, commas splitting one argument into several.

    >>> split_values(("7,9", "12"))
    ['7', '9', '12']
    """
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _layer(text: str) -> str | int:
    return int(text) if text.lstrip("-").isdigit() else text


@cache.command("build", cls=ManyValuesCommand, many_values=("--backbone", "--layers"))
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
@click.option(
    "--backbone", "backbones", multiple=True, metavar="NAME [NAME ...]", help="Backbones (or repeat it, or NAME,NAME)."
)
@click.option(
    "--layers",
    "layers",
    multiple=True,
    metavar="LAYER [LAYER ...]",
    help="Layer names or indices, each cached alone (--layers 7 9 12, --layers 7,9,12 or repeated).",
)
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
    if options.get("backbones"):
        options["backbones"] = split_values(options["backbones"])
    if layers:
        options["layer_configs"] = {layer: [_layer(layer)] for layer in split_values(layers)}
    config = build_config(spec.config, config_layers(config_file, set_options, seed, **options), "degradation")
    if not config.cache:
        raise click.UsageError("cache = false in the config: nothing would be stored")
    spec.check_config(config, plugins)
    log = logging.getLogger("esq.cache")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # its warnings once, by this handler
    try:
        context = RunContext(Path.cwd(), log, plugins)
        degradations = build_degradations(config, plugins)
        for name in config.backbones:
            extract_backbone(config, name, degradations, context)
    finally:
        log.removeHandler(handler)
    stderr.print("cache ready: esq cache ls lists it", highlight=False)


def weights_kind(weights: Any) -> str:
    """How a cache key's backbone weights read in ``esq cache ls``: ``random-init`` (``"none"``,
    or a backbone that takes no weights), ``pretrained`` (its default files) or ``file NAME``.

    >>> weights_kind("none"), weights_kind("default"), weights_kind({"path": "/w/best.ckpt", "bytes": 1})
    ('random-init', 'pretrained', 'file best.ckpt')
    """
    if weights in (None, "none"):
        return "random-init"
    if weights == "default":
        return "pretrained"
    path = weights.get("path") if isinstance(weights, dict) else weights
    return f"file {Path(str(path)).name}"


def source_kind(source: Any) -> str | None:
    """Where an entry's images came from: ``built-in`` (photographs shipped with scikit-image and
    scikit-learn), ``synthetic`` (generated) or ``folder PATH``; ``None`` for an entry built
    before esq recorded it."""
    if source is None:
        return None
    return {"builtin": "built-in", "synthetic": "synthetic"}.get(str(source), f"folder {source}")


def _row(entry: Any) -> dict[str, Any]:
    """What ``esq cache ls`` shows of one entry; a damaged one says which file is wrong."""
    from esq import DataError

    folder = {"backbone": entry.directory.parent.parent.name, "layer": entry.directory.parent.name}
    size = round(entry.size_bytes() / 2**20, 2)
    try:
        key = entry.key
        info = entry.info if entry.complete else {}
    except DataError as error:
        empty = {"weights": None, "source": None, "images": None, "count": None, "shape": None, "dtype": None}
        return {**folder, **empty, "MB": size} | {
            "status": f"damaged: {error}; esq cache rm removes it",
            "entry": entry.directory.name,
        }
    degradation = key.get("degradation")
    images = f"{degradation['type']} {degradation['level']}" if isinstance(degradation, dict) else key.get("set")
    about = key.get("about") if isinstance(key.get("about"), dict) else {}
    return {
        "backbone": key.get("backbone", folder["backbone"]),
        "weights": weights_kind(key.get("weights")),
        "layer": key.get("layer", folder["layer"]),
        "source": source_kind(about.get("source")),
        "images": images,
        "count": info.get("count"),
        "shape": info.get("shape"),
        "dtype": key.get("dtype"),
        "MB": size,
        "status": "complete" if entry.complete else f"incomplete ({len(entry.chunk_paths())} chunks)",
        "entry": entry.directory.name,
    }


def _natural(text: Any) -> tuple[Any, ...]:
    """A sort key in which the numbers inside a text compare as numbers (``block2`` before
    ``block10``, ``features.9`` before ``features.10``)."""
    import re

    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text)))


def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    """Backbone, weights, layer, image source, then the image sets in the order a run reads
    them (reference, clean evaluation, each degradation by level); the entry folder breaks ties."""
    images = str(row["images"])
    kind, _, level = images.rpartition(" ")
    try:
        set_order = (2, kind, float(level), "")
    except ValueError:
        set_order = ({"reference": 0, "evaluation": 1}.get(images, 3), "", 0.0, images)
    return (
        _natural(row["backbone"]),
        str(row["weights"]),
        _natural(row["layer"]),
        str(row["source"]),
        set_order,
        row["status"],
        row["entry"],
    )


def _rows(entries: list[Any]) -> list[dict[str, Any]]:
    """The rows of ``esq cache ls``, sorted by :func:`_order` (the same order on every call)."""
    return sorted((_row(entry) for entry in entries), key=_order)


def totals(rows: list[dict[str, Any]]) -> str:
    """The line under ``esq cache ls``: how many entries, how large, how many complete.

    >>> totals([{"MB": 1.5, "status": "complete"}, {"MB": 0.25, "status": "incomplete (1 chunks)"}])
    '2 entries, 1.75 MB: 1 complete, 1 incomplete'
    """
    states = {"complete": 0, "incomplete": 0, "damaged": 0}
    for row in rows:
        states[str(row["status"]).split(" ", 1)[0].rstrip(":")] += 1
    counted = ", ".join(f"{count} {state}" for state, count in states.items() if count)
    size = sum(row["MB"] for row in rows)
    return f"{len(rows)} {'entry' if len(rows) == 1 else 'entries'}, {size:.2f} MB: {counted}"


@cache.command("ls")
@click.option("--cache-dir", help=CACHE_DIR_HELP)
@format_options
def list_entries(cache_dir: str | None, output_format: str) -> None:
    """List cache entries, sorted by backbone, weights, layer, image source and set, then the
    totals: what each holds (weights random-init, pretrained or a file; images built-in,
    synthetic or a folder), its size, complete or not."""
    from esq.builtin.cache import ActivationCache

    store = ActivationCache(cache_dir)
    rows = _rows(store.entries())
    if not rows:
        if output_format == "json":
            print_json(rows)
        else:
            click.echo(f"activation cache {store.root}: empty")
        return
    for_people = output_format in ("table", "markdown")  # the entry folder is for scripts only
    columns = [column for column in rows[0] if column != "entry"] if for_people else None
    print_rows(f"activation cache: {store.root}", rows, output_format, columns)
    if for_people:
        click.echo(f"\n{totals(rows)} in {store.root}")
    else:  # json and csv stay data alone; the totals go to stderr
        sys.stdout.flush()
        stderr.print(f"{totals(rows)} in {store.root}", highlight=False, soft_wrap=True)


@cache.command("rm", cls=ManyValuesCommand, many_values=("--backbone", "--layer"))
@click.option("--cache-dir", help=CACHE_DIR_HELP)
@click.option(
    "--backbone", "backbones", multiple=True, metavar="NAME [NAME ...]", help="Only these backbones' entries."
)
@click.option("--layer", "layers", multiple=True, metavar="LAYER [LAYER ...]", help="Only these layers' entries.")
@click.option("--incomplete", is_flag=True, help="Only entries a build left unfinished.")
@click.option("--all", "everything", is_flag=True, help="Every entry (needed when no filter is given).")
def remove(
    cache_dir: str | None, backbones: tuple[str, ...], layers: tuple[str, ...], incomplete: bool, everything: bool
) -> None:
    """Remove cache entries: those of any of the backbones given, of any of the layers given
    (--layer block3 block4, or block3,block4), and only the unfinished ones with --incomplete."""
    from esq.builtin.cache import ActivationCache, remove_entries

    chosen_backbones, chosen_layers = set(split_values(backbones)), set(split_values(layers))
    if not (chosen_backbones or chosen_layers or incomplete or everything):
        raise click.UsageError("say what to remove: --backbone, --layer, --incomplete, or --all")
    store = ActivationCache(cache_dir)
    rows = {entry: _row(entry) for entry in store.entries()}
    chosen = [
        entry
        for entry, row in rows.items()
        if (not chosen_backbones or str(row["backbone"]) in chosen_backbones)
        and (not chosen_layers or str(row["layer"]) in chosen_layers)
        and (not incomplete or row["status"] != "complete")
    ]
    size = sum(entry.size_bytes() for entry in chosen)
    removed = remove_entries(chosen)
    click.echo(f"removed {removed} cache entries ({size / 2**20:.1f} MB) from {store.root}")
