"""User mistakes and killed builds in esq-clip: each bad input is one line on stderr naming the
file, field or option, with a non-zero exit; ``esq clip build-lmdb`` killed at any step leaves
the old or the new database in place, and the next build or read cleans what it left."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from clip_dataset import write_split
from PIL import Image

from esq import DataError
from esq.cli.main import make_cli
from esq_clip import lmdb_swap
from esq_clip.lmdb_build import build_lmdb
from esq_clip.lmdb_read import LmdbImages
from esq_clip.splits import locate_split, open_split

SMALL_MODEL = ["--vision-model", "RN50", "--text-model", "RBT3-chinese", "--batch-size", "8"]


def toy_split(root: Path, images: int = 12, split: str = "valid") -> Path:
    """``root/datasets/TOY`` with ``images`` noise images (large enough for a multi-page LMDB)
    and a text per image; returns the dataset folder."""
    folder = root / "datasets" / "TOY"
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(images)
    pictures = {
        100 + index: Image.fromarray(torch.randint(0, 256, (48, 48, 3), generator=generator).byte().numpy())
        for index in range(images)
    }
    write_split(folder, split, pictures, [(index, f"text {index}", [100 + index]) for index in range(images)])
    return folder


def retrieval(root: Path, *options: str) -> list[str]:
    return [
        "run",
        "retrieval",
        "--output-dir",
        str(root / "runs"),
        "--datapath",
        str(root / "data"),
        "--dataset",
        "TOY",
        *SMALL_MODEL,
        *options,
    ]


def build(root: Path, *options: str) -> list[str]:
    return ["clip", "build-lmdb", "--datapath", str(root / "data"), "--dataset", "TOY", "--splits", "valid", *options]


def replace_line(path: Path, number: int, line: bytes) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[number - 1] = line + b"\n"
    path.write_bytes(b"".join(lines))


def truncate_images_lmdb(root: Path) -> None:
    build_lmdb(root / "data" / "datasets" / "TOY", ["valid"])
    data = root / "data" / "datasets" / "TOY" / "lmdb" / "valid" / "imgs" / "data.mdb"
    os.truncate(data, data.stat().st_size // 3)


def text_line(root: Path, line: bytes) -> None:
    replace_line(root / "data" / "datasets" / "TOY" / "valid_texts.jsonl", 1, line)


def image_line(root: Path, line: bytes) -> None:
    replace_line(root / "data" / "datasets" / "TOY" / "valid_imgs.tsv", 1, line)


CHECKPOINT = "epoch_latest.pt"


def garbage_checkpoint(root: Path) -> None:
    (root / CHECKPOINT).write_bytes(b"not a checkpoint\n" * 10)


def lmdb_split_path(root: Path) -> Path:
    return root / "data" / "datasets" / "TOY" / "lmdb" / "valid"


def make_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")


def nothing(root: Path) -> None:
    """No change to the toy split."""


def replace_dataset(arguments: list[str], name: str) -> list[str]:
    at = arguments.index("--dataset") + 1
    return [*arguments[:at], name, *arguments[at + 1 :]]


def replace_splits(arguments: list[str], name: str) -> list[str]:
    return [*arguments[:-1], name]


def feature_files(root: Path, damage: Callable[[list[dict], list[dict]], object]) -> None:
    """A previous run's features of the toy split (4 values each) under ``root/features/random``,
    changed by ``damage(image_records, text_records)``."""
    import json

    images = [{"image_id": 100 + index, "feature": [1.0, 0.0, 0.0, float(index)]} for index in range(12)]
    texts = [{"text_id": index, "feature": [0.0, 1.0, 0.0, float(index)]} for index in range(12)]
    damage(images, texts)
    folder = root / "features" / "random"
    folder.mkdir(parents=True)
    for name, records in (("valid_imgs.img_feat.jsonl", images), ("valid_texts.txt_feat.jsonl", texts)):
        (folder / name).write_text("".join(json.dumps(record) + "\n" for record in records))


def from_features(root: Path) -> list[str]:
    return retrieval(root, "--skip-extraction", "--features-dir", str(root / "features"))


def set_feature(records: list[dict], at: int, feature: list) -> None:
    records[at]["feature"] = feature


TEXTS = "data/datasets/TOY/valid_texts.jsonl"

# (id, what to break in the toy split under root, the CLI arguments, what the one line must name)
BAD_INPUTS: list[tuple[str, Callable[[Path], object], Callable[[Path], list[str]], str]] = [
    ("build-dataset-parent", nothing, lambda root: replace_dataset(build(root), "../../x"), "'../../x'"),
    ("build-dataset-dotdot-inside", nothing, lambda root: replace_dataset(build(root), "TOY/../TOY"), "'TOY/../TOY'"),
    ("retrieval-dataset-parent", nothing, lambda root: replace_dataset(retrieval(root), "../x"), "'../x'"),
    ("build-split-parent", nothing, lambda root: replace_splits(build(root), "../valid"), "'../valid'"),
    ("build-missing-split", nothing, lambda root: replace_splits(build(root), "test"), "test_imgs.tsv"),
    ("retrieval-missing-split", nothing, lambda root: retrieval(root, "--split", "test"), "test_imgs.tsv"),
    ("retrieval-missing-jsonl", lambda root: (root / TEXTS).unlink(), retrieval, "valid_texts.jsonl"),
    ("build-bad-base64", lambda root: image_line(root, b"100\t!!!not base64"), build, "valid_imgs.tsv, line 1"),
    (
        "retrieval-not-an-image",
        lambda root: image_line(root, b"100\t" + base64.b64encode(b"not an image")),
        retrieval,
        "valid_imgs.tsv, line 1: image 100 does not decode as an image (not a known image format)",
    ),
    (
        "jsonl-text-id-string",
        lambda root: text_line(root, b'{"text_id": "0", "text": "x", "image_ids": [100]}'),
        retrieval,
        "valid_texts.jsonl, line 1: text_id '0'",
    ),
    (
        "jsonl-missing-image-ids",
        lambda root: text_line(root, b'{"text_id": 0, "text": "x"}'),
        retrieval,
        "valid_texts.jsonl, line 1: missing image_ids",
    ),
    (
        "jsonl-image-ids-not-list",
        lambda root: text_line(root, b'{"text_id": 0, "text": "x", "image_ids": 100}'),
        retrieval,
        "valid_texts.jsonl, line 1: image_ids",
    ),
    (
        "jsonl-not-utf8",
        lambda root: text_line(root, b'{"text_id": 0, "text": "\xff\xfe", "image_ids": [100]}'),
        retrieval,
        "valid_texts.jsonl, line 1: not valid JSON",
    ),
    (
        "jsonl-not-utf8-build",
        lambda root: text_line(root, b'{"text_id": 0, "text": "\xff", "image_ids": [100]}'),
        build,
        "valid_texts.jsonl, line 1",
    ),
    (
        "too-few-texts",
        lambda root: (root / TEXTS).write_text('{"text_id": 0, "text": "x", "image_ids": [100]}\n'),
        retrieval,
        "TOY/valid: 1 texts, but image-to-text retrieval predicts the top 10",
    ),
    ("truncated-lmdb", truncate_images_lmdb, retrieval, "imgs/data.mdb: truncated"),
    (
        "truncated-lmdb-explicit-source",
        truncate_images_lmdb,
        lambda root: retrieval(root, "--data-source", "lmdb"),
        "imgs/data.mdb: truncated",
    ),
    ("lmdb-split-is-a-file", lambda root: make_file(lmdb_split_path(root)), retrieval, "lmdb/valid: not a folder"),
    (
        "lmdb-without-data-mdb",
        lambda root: (lmdb_split_path(root) / "imgs").mkdir(parents=True),
        retrieval,
        "imgs/data.mdb: no such file",
    ),
    (
        "checkpoint-not-torch",
        garbage_checkpoint,
        lambda root: retrieval(root, "--model-path", str(root / CHECKPOINT)),
        "epoch_latest.pt: torch cannot read it",
    ),
    (
        "checkpoint-other-architecture",
        lambda root: torch.save({"state_dict": {"module.x": torch.zeros(2)}}, root / CHECKPOINT),
        lambda root: retrieval(root, "--model-path", str(root / CHECKPOINT)),
        "epoch_latest.pt: not a checkpoint of this architecture",
    ),
    (
        "checkpoint-not-a-dict",
        lambda root: torch.save([torch.zeros(2)], root / CHECKPOINT),
        lambda root: retrieval(root, "--model-path", str(root / CHECKPOINT)),
        "epoch_latest.pt: expected a dict",
    ),
    ("device-banana", nothing, lambda root: retrieval(root, "--device", "banana"), "device must be a torch device"),
    ("device-absent", nothing, lambda root: retrieval(root, "--device", "cuda:64"), "device is 'cuda:64'"),
    (
        "lmdb-dir-under-a-file",
        nothing,
        lambda root: build(root, "--lmdb-dir", str(root / "data/datasets/TOY/valid_imgs.tsv/lmdb")),
        "valid_imgs.tsv",
    ),
    (
        "features-ragged",
        lambda root: feature_files(root, lambda images, texts: set_feature(images, 1, [1.0, 2.0])),
        from_features,
        "valid_imgs.img_feat.jsonl, line 2: a feature of 2 values, line 1 has 4",
    ),
    (
        "features-nan",
        lambda root: feature_files(root, lambda images, texts: set_feature(texts, 2, [float("nan")] * 4)),
        from_features,
        "valid_texts.txt_feat.jsonl, line 3: the feature holds NaN or infinity",
    ),
    (
        "features-strings",
        lambda root: feature_files(root, lambda images, texts: set_feature(texts, 0, ["1", "2", "3", "4"])),
        from_features,
        "valid_texts.txt_feat.jsonl, line 1: not a features line",
    ),
    (
        "features-missing-text",
        lambda root: feature_files(root, lambda images, texts: texts.pop(1)),
        from_features,
        "valid_texts.txt_feat.jsonl: no feature for text 1 of TOY/valid",
    ),
    (
        "features-other-split",
        lambda root: feature_files(root, lambda images, texts: images.append({"image_id": 555, "feature": [0.0] * 4})),
        from_features,
        "valid_imgs.img_feat.jsonl: image 555 is not in TOY/valid",
    ),
    (
        "features-duplicate-id",
        lambda root: feature_files(root, lambda images, texts: images.append(dict(images[0]))),
        from_features,
        "valid_imgs.img_feat.jsonl, line 13: image_id 100 again (first on line 1)",
    ),
    (
        "features-dimensions-differ",
        lambda root: feature_files(root, lambda images, texts: [set_feature(texts, i, [0.0] * 3) for i in range(12)]),
        from_features,
        "valid_texts.txt_feat.jsonl: features of 3 values, but",
    ),
]


@pytest.mark.parametrize(
    ("damage", "arguments", "names"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_input_is_one_line_naming_it(tmp_path: Path, damage, arguments, names: str) -> None:
    toy_split(tmp_path / "data")
    damage(tmp_path)
    result = CliRunner().invoke(make_cli(), arguments(tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code != 0, result.output
    assert len(lines) == 1, result.stderr
    assert names in lines[0], lines[0]
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr


def test_truncated_lmdb_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """In a process of its own: without the size check, reading the truncated file kills it (SIGBUS)."""
    toy_split(tmp_path / "data")
    truncate_images_lmdb(tmp_path)
    code = "import pathlib, sys; from esq_clip.lmdb_read import LmdbImages; LmdbImages.open(pathlib.Path(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(lmdb_split_path(tmp_path) / "imgs")], capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr
    assert "DataError" in done.stderr and "data.mdb: truncated" in done.stderr


def test_read_only_lmdb_folder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder esq may not write to (root ignores permissions, so the refusal is simulated)."""
    toy_split(tmp_path / "data")
    target = tmp_path / "readonly"
    real_mkdir = Path.mkdir

    def refuse(self: Path, *args, **kwargs) -> None:
        if self == target / "lmdb" or target in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    result = CliRunner().invoke(make_cli(), build(tmp_path, "--lmdb-dir", str(target / "lmdb")))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {target / 'lmdb'}: permission denied; make it writable or choose another folder"
    ]


def gallery(lmdb_dir: Path) -> int:
    return len(LmdbImages.open(lmdb_dir / "valid" / "imgs").image_ids)


def leftovers(lmdb_dir: Path) -> list[str]:
    return [name for name in os.listdir(lmdb_dir) if lmdb_swap.LEFTOVER.fullmatch(name)]


def killed_build(dataset: Path, step: int, can_exchange: bool) -> int:
    """Build in a forked child that dies (``os._exit``, as a SIGKILL would: no ``finally`` runs)
    just before its ``step``-th file-system step of the swap; returns the number of steps taken."""
    child = os.fork()
    if child == 0:
        code = 70
        try:
            calls = iter(range(1, 1000))

            def stepping(function: Callable) -> Callable:
                def step_then(*arguments, **options):
                    if next(calls) == step:
                        os._exit(137)
                    return function(*arguments, **options)

                return step_then

            lmdb_swap.exchange = stepping(lmdb_swap.exchange) if can_exchange else (lambda first, second: False)
            lmdb_swap.os.rename = stepping(os.rename)
            lmdb_swap.shutil.rmtree = stepping(lmdb_swap.shutil.rmtree)
            build_lmdb(dataset, ["valid"])
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("can_exchange", [True, False], ids=["exchange", "rename-aside"])
def test_killed_swap_leaves_old_or_new_database(tmp_path: Path, can_exchange: bool) -> None:
    old_images, new_images = 12, 13
    dataset = toy_split(tmp_path / "data", images=old_images)
    lmdb_dir = dataset / "lmdb"
    step = 1
    while True:
        build_lmdb(toy_split(tmp_path / "data", images=old_images), ["valid"])
        toy_split(tmp_path / "data", images=new_images)
        code = killed_build(dataset, step, can_exchange)
        if code == 0:  # no step left to die before
            break
        assert code == 137
        if can_exchange:  # never a moment without a database
            assert gallery(lmdb_dir) in (old_images, new_images)
        files = locate_split(tmp_path / "data", "TOY", "valid")  # a read cleans up, never falls back to TSV
        assert files.source == "lmdb"
        assert gallery(lmdb_dir) in (old_images, new_images)
        assert leftovers(lmdb_dir) == []
        step += 1
    assert step == (3 if can_exchange else 4)
    assert gallery(lmdb_dir) == new_images


def test_next_build_cleans_what_a_killed_build_left(tmp_path: Path) -> None:
    dataset = toy_split(tmp_path / "data", images=12)
    build_lmdb(dataset, ["valid"])
    toy_split(tmp_path / "data", images=13)
    assert killed_build(dataset, 2, can_exchange=False) == 137  # after the old copy went aside
    assert not (dataset / "lmdb" / "valid").exists()
    assert len(leftovers(dataset / "lmdb")) == 2
    build_lmdb(dataset, ["valid"])
    assert leftovers(dataset / "lmdb") == []
    assert gallery(dataset / "lmdb") == 13


def test_split_aside_during_a_running_build_is_refused_not_read_from_tsv(tmp_path: Path) -> None:
    dataset = toy_split(tmp_path / "data")
    build_lmdb(dataset, ["valid"])
    os.rename(dataset / "lmdb" / "valid", dataset / "lmdb" / ".valid.0123456789ab.old")
    with lmdb_swap.build_lock(dataset / "lmdb") as locked:  # as a build between its two renames holds it
        assert locked
        with pytest.raises(DataError, match=r"lmdb/valid: missing while .*\.valid\.0123456789ab\.old holds its old"):
            open_split(tmp_path / "data", "TOY", "valid")
        with pytest.raises(DataError, match="another `esq clip build-lmdb` is writing here"):
            build_lmdb(dataset, ["valid"])
    assert open_split(tmp_path / "data", "TOY", "valid").image_ids  # lock released: restored and read
    assert leftovers(dataset / "lmdb") == []
