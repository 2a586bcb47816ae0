"""``esq clip build-lmdb``: convert a Chinese-CLIP dataset's TSV + jsonl splits to its LMDB form,
as cn-clip's ``build_lmdb_dataset.py`` does, checked first and written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import click

from esq import ConfigError


@click.group("clip")
def clip() -> None:
    """Chinese-CLIP datasets: the files `esq run retrieval` reads."""


@clip.command("build-lmdb")
@click.option(
    "--datapath",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The data root; the dataset is in DATAPATH/datasets/NAME/.",
)
@click.option("--dataset", required=True, metavar="NAME", help="The dataset's folder name, e.g. MUGE.")
@click.option(
    "--splits",
    required=True,
    metavar="SPLIT[,SPLIT...]",
    help="Comma-separated splits to convert, e.g. valid,test ({split}_imgs.tsv and {split}_texts.jsonl).",
)
@click.option(
    "--lmdb-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write SPLIT/imgs and SPLIT/pairs [default: DATAPATH/datasets/NAME/lmdb].",
)
def build_lmdb_command(datapath: Path, dataset: str, splits: str, lmdb_dir: Path | None) -> None:
    """Convert TSV + jsonl splits to LMDB (lmdb/SPLIT/imgs and lmdb/SPLIT/pairs).

    Every split is checked before anything is written; an existing LMDB of a split is replaced.
    """
    from esq_clip.lmdb_build import build_lmdb
    from esq_clip.splits import dataset_folder

    names = [name.strip() for name in splits.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"--splits names no split (got {splits!r}); give e.g. --splits valid,test")
    dataset_dir = dataset_folder(datapath, dataset)  # the check `esq run retrieval` makes of its dataset
    target = lmdb_dir if lmdb_dir is not None else dataset_dir / "lmdb"
    for split, (images, pairs) in build_lmdb(dataset_dir, names, lmdb_dir).items():
        click.echo(f"{split}: {images} images, {pairs} pairs -> {target / split}")
