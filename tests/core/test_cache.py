"""The activation cache with a fake backbone: what a miss stores and a hit reads, chunking,
resuming a killed build, distrust of damaged chunks, storage dtypes, keys, the cache folder,
and ``esq cache ls`` / ``esq cache rm``."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from click.testing import CliRunner

from esq.builtin.cache import ActivationCache, CacheEntry, cached_activations, default_root, key_digest, remove_entries
from esq.cli.main import make_cli
from esq.errors import ConfigError, DataError

LOG = logging.getLogger("esq_tests.cache")
COUNT = 10
BLUR = {"type": "gaussian_blur", "level": 2}


def expected(start: int, stop: int, offset: int = 0) -> np.ndarray:
    """What the fake backbone gives for images ``start`` … ``stop - 1``: distinct per image."""
    return np.arange(start * 12, stop * 12, dtype=np.float32).reshape(stop - start, 3, 2, 2) + offset


class FakeExtract:
    """``extract(start, stop, layers)``: records every call; raises once ``fail_after`` calls are done.
    Layer ``block2`` is offset by 1000 so the layers' arrays differ."""

    def __init__(self, fail_after: int | None = None, dtype: str = "float32") -> None:
        self.calls: list[tuple[int, int, list[str]]] = []
        self.fail_after = fail_after
        self.dtype = dtype

    def __call__(self, start: int, stop: int, layers: list[str]) -> dict[str, np.ndarray]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("backbone killed")
        self.calls.append((start, stop, list(layers)))
        return {layer: expected(start, stop, self.offset(layer)).astype(self.dtype) for layer in layers}

    @staticmethod
    def offset(layer: str) -> int:
        return 1000 if layer == "block2" else 0

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return [(start, stop) for start, stop, _ in self.calls]


def key(layer: str = "block1", images: str = "abc", degradation: dict | None = None, **extra) -> dict:
    return {
        "backbone": "fake",
        "layer": layer,
        "set": "reference",
        "images": images,
        "degradation": degradation,
        **extra,
    }


def build(cache, extract, *layers: str, count: int = COUNT, **key_options) -> dict[str, list[np.ndarray]]:
    keys = {layer: key(layer, **key_options) for layer in layers or ("block1",)}
    return cached_activations(cache, keys, count, extract, label="fake reference", log=LOG)


def interrupted(cache, fail_after: int, *layers: str, **key_options) -> None:
    with pytest.raises(RuntimeError, match="backbone killed"):
        build(cache, FakeExtract(fail_after=fail_after), *layers, **key_options)


def test_a_miss_extracts_every_chunk_and_stores_it(tmp_path, caplog):
    cache = ActivationCache(tmp_path, chunk_size=4)
    extract = FakeExtract()
    with caplog.at_level(logging.INFO, logger=LOG.name):
        result = build(cache, extract, "block1", "block2")
    assert "CACHE MISS fake reference: extracting block1, block2" in caplog.text and "CACHE HIT" not in caplog.text
    assert extract.ranges == [(0, 4), (4, 8), (8, 10)]
    assert all(layers == ["block1", "block2"] for _, _, layers in extract.calls)
    assert np.array_equal(np.concatenate(result["block1"]), expected(0, COUNT))
    assert np.array_equal(np.concatenate(result["block2"]), expected(0, COUNT, 1000))
    assert cache.entry(key("block1")).complete and cache.entry(key("block2")).complete


def test_a_hit_reads_read_only_memory_maps_without_extracting(tmp_path, caplog):
    cache = ActivationCache(tmp_path, chunk_size=4)
    first = build(cache, FakeExtract(), "block1", "block2")
    caplog.clear()
    extract = FakeExtract()
    with caplog.at_level(logging.INFO, logger=LOG.name):
        second = build(cache, extract, "block1", "block2")
    assert "CACHE HIT fake reference: block1, block2" in caplog.text and "CACHE MISS" not in caplog.text
    assert extract.calls == []
    for layer in ("block1", "block2"):
        assert all(isinstance(chunk, np.memmap) and not chunk.flags.writeable for chunk in second[layer])
        assert np.array_equal(np.concatenate(second[layer]), np.concatenate(first[layer]))


def test_a_miss_returns_the_stored_arrays_in_the_storage_dtype(tmp_path):
    result = build(ActivationCache(tmp_path, chunk_size=4), FakeExtract(dtype="float64"))
    assert all(isinstance(chunk, np.memmap) and chunk.dtype == np.float32 for chunk in result["block1"])


def test_only_the_layers_the_cache_lacks_are_extracted(tmp_path, caplog):
    cache = ActivationCache(tmp_path, chunk_size=4)
    build(cache, FakeExtract(), "block1")
    extract = FakeExtract()
    with caplog.at_level(logging.INFO, logger=LOG.name):
        result = build(cache, extract, "block1", "block2")
    assert "CACHE MISS fake reference: extracting block2 into" in caplog.text
    assert {tuple(layers) for _, _, layers in extract.calls} == {("block2",)}
    assert np.array_equal(np.concatenate(result["block1"]), expected(0, COUNT))
    assert np.array_equal(np.concatenate(result["block2"]), expected(0, COUNT, 1000))


def test_without_a_cache_everything_is_extracted_in_memory_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ESQ_CACHE_DIR", str(tmp_path / "default"))
    extract = FakeExtract()
    result = cached_activations(None, {"block1": key()}, COUNT, extract, label="fake", log=LOG, chunk_size=3)
    assert extract.ranges == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert not any(isinstance(chunk, np.memmap) for chunk in result["block1"])
    assert np.array_equal(np.concatenate(result["block1"]), expected(0, COUNT))
    assert list(tmp_path.iterdir()) == []


def test_a_count_that_is_not_a_multiple_of_the_chunk_size_ends_with_a_short_chunk(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    extract = FakeExtract()
    # the cache's chunk size wins over the argument
    result = cached_activations(cache, {"block1": key()}, COUNT, extract, label="fake", log=LOG, chunk_size=64)
    assert extract.ranges == [(0, 4), (4, 8), (8, 10)]
    assert [len(chunk) for chunk in result["block1"]] == [4, 4, 2]
    entry = cache.entry(key())
    assert [path.name for path in entry.chunk_paths()] == ["chunk_00000.npy", "chunk_00001.npy", "chunk_00002.npy"]
    assert entry.info["chunks"] == 3 and entry.info["chunk_size"] == 4


def test_a_killed_build_leaves_an_incomplete_entry_with_the_finished_chunks_only(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    interrupted(cache, 2)
    entry = cache.entry(key())
    assert entry.directory.is_dir() and not (entry.directory / "entry.json").exists() and not entry.complete
    with pytest.raises(DataError, match="incomplete"):
        entry.chunks()
    assert sorted(path.name for path in entry.directory.iterdir()) == ["chunk_00000.npy", "chunk_00001.npy", "key.json"]
    assert np.array_equal(np.load(entry.chunk_path(1)), expected(4, 8))


def test_a_killed_build_resumes_at_the_first_missing_chunk_and_matches_a_fresh_build(tmp_path):
    cache = ActivationCache(tmp_path / "resumed", chunk_size=4)
    interrupted(cache, 2, "block1", "block2")
    extract = FakeExtract()
    resumed = build(cache, extract, "block1", "block2")
    assert extract.ranges == [(8, 10)]
    fresh = build(ActivationCache(tmp_path / "fresh", chunk_size=4), FakeExtract(), "block1", "block2")
    for layer in ("block1", "block2"):
        assert [len(chunk) for chunk in resumed[layer]] == [4, 4, 2]
        assert np.array_equal(np.concatenate(resumed[layer]), np.concatenate(fresh[layer]))
        assert cache.entry(key(layer)).info["count"] == COUNT


def test_a_failed_chunk_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    cache = ActivationCache(tmp_path, chunk_size=4)
    replace = os.replace

    def fail_on_second_chunk(source, target):
        if str(target).endswith("chunk_00001.npy"):
            raise OSError("disk full")
        replace(source, target)

    monkeypatch.setattr(os, "replace", fail_on_second_chunk)
    with pytest.raises(OSError, match="disk full"):
        build(cache, FakeExtract())
    monkeypatch.undo()
    entry = cache.entry(key())
    assert sorted(path.name for path in entry.directory.iterdir()) == ["chunk_00000.npy", "key.json"]


def test_a_temporary_file_left_by_a_killed_writer_is_not_taken_for_a_chunk(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    interrupted(cache, 2)
    entry = cache.entry(key())
    (entry.directory / ".chunk_00002.npy.x1y2z3.tmp").write_bytes(b"\x93NUMPY half a chunk")
    assert [path.name for path in entry.chunk_paths()] == ["chunk_00000.npy", "chunk_00001.npy"]
    extract = FakeExtract()
    result = build(cache, extract)
    assert extract.ranges == [(8, 10)]
    assert np.array_equal(np.concatenate(result["block1"]), expected(0, COUNT))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(b"garbage, not a .npy file"), id="garbage"),
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[:-8]), id="truncated"),
        pytest.param(lambda path: np.save(path, expected(4, 7)), id="too-few-images"),
    ],
)
def test_a_damaged_chunk_of_an_incomplete_entry_is_extracted_again(tmp_path, damage):
    cache = ActivationCache(tmp_path, chunk_size=4)
    interrupted(cache, 2)
    damage(cache.entry(key()).chunk_path(1))
    extract = FakeExtract()
    result = build(cache, extract)
    assert extract.ranges == [(4, 8), (8, 10)]
    assert np.array_equal(np.concatenate(result["block1"]), expected(0, COUNT))


def test_float16_storage_is_float16_and_a_separate_entry(tmp_path):
    half, full = ActivationCache(tmp_path, dtype="float16", chunk_size=4), ActivationCache(tmp_path, chunk_size=4)
    stored = build(half, FakeExtract())
    assert all(chunk.dtype == np.float16 for chunk in stored["block1"])
    assert np.array_equal(np.concatenate(stored["block1"]), expected(0, COUNT).astype(np.float16))
    assert half.entry(key()).info["dtype"] == "float16" and half.entry(key()).key["dtype"] == "float16"
    assert half.entry(key()).directory != full.entry(key()).directory and not full.entry(key()).complete
    extract = FakeExtract()
    assert build(full, extract)["block1"][0].dtype == np.float32 and extract.calls != []


def test_the_chunk_size_is_part_of_the_entry(tmp_path):
    assert ActivationCache(tmp_path, chunk_size=4).entry(key()) != ActivationCache(tmp_path, chunk_size=5).entry(key())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dtype": "float64"}, "cache dtype 'float64' is not one of float32, float16"),
        ({"dtype": "bfloat16"}, "cache dtype 'bfloat16'"),
        ({"chunk_size": 0}, "chunk_size must be at least 1, got 0"),
        ({"chunk_size": -3}, "chunk_size must be at least 1, got -3"),
    ],
)
def test_invalid_cache_options_raise_config_error(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        ActivationCache(tmp_path, **options)


@pytest.mark.parametrize(
    "change",
    [
        {"layer": "block2"},
        {"images": "def"},
        {"set": "evaluation"},
        {"backbone": "other"},
        {"degradation": {"type": "gaussian_blur", "level": 1}},
        {"degradation": BLUR},
        {"degradation": {"type": "jpeg", "level": 2}},
    ],
    ids=lambda change: "-".join(f"{name}={value}" for name, value in change.items()),
)
def test_a_different_key_value_is_a_different_entry(tmp_path, change):
    cache = ActivationCache(tmp_path)
    assert cache.entry({**key(), **change}).directory != cache.entry(key()).directory


def test_key_order_does_not_change_the_entry(tmp_path):
    cache = ActivationCache(tmp_path)
    shuffled = dict(reversed(list(key(degradation=BLUR).items())))
    shuffled["degradation"] = {"level": 2, "type": "gaussian_blur"}
    assert cache.entry(shuffled) == cache.entry(key(degradation=BLUR))
    assert key_digest(shuffled) == key_digest(key(degradation=BLUR))


def test_the_entry_folder_is_backbone_then_layer_then_digest(tmp_path):
    entry = ActivationCache(tmp_path).entry(key(layer="features/3:out"))
    assert entry.directory.parent == tmp_path / "fake" / "features_3_out"
    assert len(entry.directory.name) == 24


def test_layers_whose_folder_names_collide_are_still_separate_entries(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    build(cache, FakeExtract(), "a/b", "a_b")
    assert cache.entry(key("a/b")).directory.parent == cache.entry(key("a_b")).directory.parent
    assert sorted(entry.key["layer"] for entry in cache.entries()) == ["a/b", "a_b"]


def test_an_entry_keeps_its_key_and_build_facts(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    built_key = key(degradation=BLUR, options={"weights": "none", "sizes": [1, 2]})
    cached_activations(cache, {"block1": built_key}, COUNT, FakeExtract(), label="fake", log=LOG)
    entry = CacheEntry(cache.entry(built_key).directory)
    assert entry.key == {**built_key, "dtype": "float32"}
    info = entry.info
    assert (info["count"], info["shape"], info["dtype"], info["chunks"]) == (COUNT, [3, 2, 2], "float32", 3)
    assert info["seconds"] >= 0 and info["built"]


def test_entries_lists_complete_and_incomplete_entries(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    assert ActivationCache(tmp_path / "missing").entries() == []
    build(cache, FakeExtract(), "block1", "block2")
    interrupted(cache, 1, "block1", images="killed")
    cache.write_note({"backbone": "fake"}, {"layers": ["block1"]})
    listed = cache.entries()
    assert sorted((entry.key["layer"], entry.key["images"], entry.complete) for entry in listed) == [
        ("block1", "abc", True),
        ("block1", "killed", False),
        ("block2", "abc", True),
    ]
    assert listed == sorted(listed, key=lambda entry: entry.directory)


def test_default_root_is_esq_cache_dir_first(tmp_path, monkeypatch):
    monkeypatch.setenv("ESQ_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "mine"
    assert ActivationCache().root == tmp_path / "mine"


def test_default_root_falls_back_to_xdg_cache_home_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ESQ_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "esq" / "activations"
    monkeypatch.delenv("ESQ_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".cache" / "esq" / "activations"


def test_remove_entries_deletes_the_chosen_entries_only(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    build(cache, FakeExtract(), "block1", "block2")
    interrupted(cache, 1, "block1", images="killed")
    doomed = [entry for entry in cache.entries() if entry.key["layer"] == "block1"]
    assert remove_entries(doomed) == 2
    assert not any(entry.directory.exists() for entry in doomed)
    assert [entry.key["layer"] for entry in cache.entries()] == ["block2"]
    assert np.array_equal(np.concatenate(cache.entry(key("block2")).chunks()), expected(0, COUNT, 1000))


def esq(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(make_cli(), ["cache", *args], env=env, catch_exceptions=False)


@pytest.fixture
def populated(tmp_path):
    """A cache with four entries: fake block1 and block2 on clean images, fake block1 blurred at
    level 2, an incomplete fake block2 (two chunks of three), and a complete other block1."""
    cache = ActivationCache(tmp_path, chunk_size=4)
    build(cache, FakeExtract(), "block1", "block2")
    build(cache, FakeExtract(), "block1", degradation=BLUR)
    interrupted(cache, 2, "block2", images="killed")
    cached_activations(cache, {"block1": key(backbone="other")}, 6, FakeExtract(), label="other", log=LOG)
    return tmp_path


def listing(root) -> list[dict]:
    result = esq("ls", "--cache-dir", str(root), "--json")
    assert result.exit_code == 0
    return json.loads(result.stdout)


def test_cache_ls_json_describes_every_entry(populated):
    listed = listing(populated)
    assert sorted((row["backbone"], row["layer"], row["images"], row["status"]) for row in listed) == [
        ("fake", "block1", "gaussian_blur 2", "complete"),
        ("fake", "block1", "reference", "complete"),
        ("fake", "block2", "reference", "complete"),
        ("fake", "block2", "reference", "incomplete (2 chunks)"),
        ("other", "block1", "reference", "complete"),
    ]
    blurred = next(row for row in listed if row["images"] == "gaussian_blur 2")
    assert (blurred["count"], blurred["shape"], blurred["dtype"]) == (COUNT, [3, 2, 2], "float32")
    assert blurred["entry"] == ActivationCache(populated, chunk_size=4).entry(key(degradation=BLUR)).directory.name
    unfinished = next(row for row in listed if row["status"].startswith("incomplete"))
    assert unfinished["count"] is None and unfinished["shape"] is None
    assert next(row for row in listed if row["backbone"] == "other")["count"] == 6


def test_cache_ls_without_json_prints_a_table(populated):
    result = esq("ls", "--cache-dir", str(populated))
    assert result.exit_code == 0 and result.stdout.startswith("activation cache: ")
    # narrow terminals fold the cells, so look only for the short ones
    assert all(word in result.stdout for word in ("fake", "other", "block1", "block2", "3, 2, 2"))


def test_cache_ls_of_an_empty_cache_says_so(tmp_path):
    result = esq("ls", "--cache-dir", str(tmp_path / "nothing"))
    assert result.exit_code == 0 and result.stdout == f"activation cache {tmp_path / 'nothing'}: empty\n"
    assert listing(tmp_path / "nothing") == []


def test_cache_ls_reads_esq_cache_dir_without_an_option(populated):
    result = esq("ls", "--json", env={"ESQ_CACHE_DIR": str(populated)})
    assert len(json.loads(result.stdout)) == 5


def test_cache_rm_without_a_filter_refuses_and_names_the_filters(populated):
    result = CliRunner().invoke(make_cli(), ["cache", "rm", "--cache-dir", str(populated)])
    assert result.exit_code != 0
    assert "say what to remove: --backbone, --layer, --incomplete, or --all" in result.output
    assert len(listing(populated)) == 5


@pytest.mark.parametrize(
    ("options", "removed", "left"),
    [
        (["--backbone", "fake"], 4, [("other", "block1", "complete")]),
        (
            ["--layer", "block2"],
            2,
            [("fake", "block1", "complete"), ("fake", "block1", "complete"), ("other", "block1", "complete")],
        ),
        (
            ["--backbone", "fake", "--layer", "block1"],
            2,
            [
                ("fake", "block2", "complete"),
                ("fake", "block2", "incomplete (2 chunks)"),
                ("other", "block1", "complete"),
            ],
        ),
        (
            ["--incomplete"],
            1,
            [
                ("fake", "block1", "complete"),
                ("fake", "block1", "complete"),
                ("fake", "block2", "complete"),
                ("other", "block1", "complete"),
            ],
        ),
        (
            ["--layer", "block1", "block2", "--backbone", "other"],
            1,
            [
                ("fake", "block1", "complete"),
                ("fake", "block1", "complete"),
                ("fake", "block2", "complete"),
                ("fake", "block2", "incomplete (2 chunks)"),
            ],
        ),
        (
            ["--backbone", "fake", "other", "--layer", "block2"],
            2,
            [("fake", "block1", "complete"), ("fake", "block1", "complete"), ("other", "block1", "complete")],
        ),
        (["--backbone", "nobody"], 0, None),
        (["--all"], 5, []),
    ],
    ids=[
        "backbone",
        "layer",
        "backbone-and-layer",
        "incomplete",
        "layers-one-flag",
        "backbones-one-flag",
        "no-match",
        "all",
    ],
)
def test_cache_rm_removes_the_matching_entries_and_prints_the_count(populated, options, removed, left):
    before = sorted((row["backbone"], row["layer"], row["status"]) for row in listing(populated))
    result = esq("rm", "--cache-dir", str(populated), *options)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"removed {removed} cache entries (") and str(populated) in result.stdout
    after = sorted((row["backbone"], row["layer"], row["status"]) for row in listing(populated))
    assert after == (before if left is None else left)


def test_notes_round_trip_by_key(tmp_path):
    cache = ActivationCache(tmp_path)
    assert cache.read_note({"backbone": "fake"}) is None
    cache.write_note({"backbone": "fake"}, {"preprocess": "none", "layers": ["block1"]})
    assert cache.read_note({"backbone": "fake"}) == {"preprocess": "none", "layers": ["block1"]}


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_complete_entry_is_one_error_naming_the_fix(tmp_path, damage):
    cache = ActivationCache(tmp_path, chunk_size=4)
    build(cache, FakeExtract(), "block1")
    (entry,) = cache.entries()
    chunk = entry.chunk_path(1)
    if damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:100])
    else:
        chunk.unlink()
    with pytest.raises(DataError, match="damaged.*esq cache rm --backbone fake --layer block1"):
        entry.chunks()


def test_no_images_is_an_error_not_an_empty_entry(tmp_path):
    cache = ActivationCache(tmp_path)
    with pytest.raises(DataError, match="fake: no images"):
        cached_activations(
            cache,
            {"block1": {"backbone": "fake", "layer": "block1"}},
            0,
            FakeExtract(),
            label="fake",
            log=logging.getLogger("t"),
        )
    assert cache.entries() == []


def test_writing_a_note_removes_what_a_killed_note_writer_left(tmp_path):
    cache = ActivationCache(tmp_path)
    (tmp_path / "_notes").mkdir()
    (tmp_path / "_notes" / ".0123.json.x1.tmp").write_text("{half")
    cache.write_note({"backbone": "fake"}, {"layers": ["block1"]})
    assert [path.name for path in (tmp_path / "_notes").iterdir()] == [f"{key_digest({'backbone': 'fake'})}.json"]
    assert cache.read_note({"backbone": "fake"}) == {"layers": ["block1"]}


@pytest.mark.parametrize(
    ("args", "spread"),
    [
        (["--layers", "7", "9", "12"], ["--layers", "7", "--layers", "9", "--layers", "12"]),
        (["--layers", "-1", "0", "--mode", "quick"], ["--layers", "-1", "--layers", "0", "--mode", "quick"]),
        (["--layers=7", "9"], ["--layers=7", "9"]),
        (["--layers", "7,9", "--layers", "12"], ["--layers", "7,9", "--layers", "12"]),
        (["--mode", "quick", "--layers", "7", "--", "9"], ["--mode", "quick", "--layers", "7", "--", "9"]),
        (["--layers", "7", "-1", "-h"], ["--layers", "7", "--layers", "-1", "-h"]),
    ],
    ids=["several", "negative-index-then-option", "inline-value", "commas-and-repeats", "double-dash", "short-option"],
)
def test_a_many_valued_option_takes_every_value_up_to_the_next_option(args, spread):
    from esq.builtin.cache_command import spread_values

    assert spread_values(args, ("--layers", "--backbone")) == spread


def test_many_valued_options_split_at_commas():
    from esq.builtin.cache_command import split_values

    assert split_values(("7,9,", " 12", "block4")) == ["7", "9", "12", "block4"]


def described(tmp_path, layer: str, degradation: dict | None = None, source: str = "builtin", **extra) -> None:
    """One complete entry of the fake backbone with its image source recorded."""
    cache = ActivationCache(tmp_path, chunk_size=4)
    keys = {layer: key(layer, degradation=degradation, **extra)}
    cached_activations(cache, keys, 4, FakeExtract(), label="fake", log=LOG, about={"source": source})


def test_cache_ls_sorts_by_backbone_weights_layer_source_then_sets_in_reading_order(tmp_path):
    for layer in ("block10", "block2"):
        for level in (10, 2):
            described(tmp_path, layer, {"type": "gaussian_noise", "level": level})
        described(tmp_path, layer, set="evaluation")
        described(tmp_path, layer)
    described(tmp_path, "block2", images="photos", source=str(tmp_path / "photos"))
    listed = [(row["layer"], row["source"], row["images"]) for row in listing(tmp_path)]
    sets = ["reference", "evaluation", "gaussian_noise 2", "gaussian_noise 10"]
    assert listed == [
        *[("block2", "built-in", images) for images in sets],
        ("block2", f"folder {tmp_path / 'photos'}", "reference"),
        *[("block10", "built-in", images) for images in sets],
    ]
    assert listing(tmp_path) == listing(tmp_path)


def test_cache_ls_tells_random_init_from_pretrained_and_built_in_from_folder_images(tmp_path):
    described(tmp_path, "block1", weights="none", source="synthetic")
    described(tmp_path, "block2", images="photos", weights="default", source=str(tmp_path / "photos"))
    described(tmp_path, "block3", weights={"path": str(tmp_path / "best.ckpt"), "bytes": 1}, source="builtin")
    described(tmp_path, "block4")  # a backbone that takes no weights is random-initialised
    listed = {row["layer"]: (row["weights"], row["source"]) for row in listing(tmp_path)}
    assert listed == {
        "block1": ("random-init", "synthetic"),
        "block2": ("pretrained", f"folder {tmp_path / 'photos'}"),
        "block3": ("file best.ckpt", "built-in"),
        "block4": ("random-init", "built-in"),
    }


def test_the_image_source_is_no_part_of_the_key(tmp_path):
    described(tmp_path, "block1", source="builtin")
    (entry,) = ActivationCache(tmp_path).entries()
    assert entry.directory.name == ActivationCache(tmp_path, chunk_size=4).entry(key("block1")).directory.name
    assert entry.key["about"] == {"source": "builtin"}


def test_cache_ls_ends_with_the_totals_and_keeps_json_and_csv_data_alone(populated):
    table = esq("ls", "--cache-dir", str(populated))
    rows = listing(populated)
    size = sum(row["MB"] for row in rows)
    line = f"5 entries, {size:.2f} MB: 4 complete, 1 incomplete in {populated}"
    assert table.stdout.rstrip("\n").endswith(line)
    for output_format in ("json", "csv"):
        result = esq("ls", "--cache-dir", str(populated), "--format", output_format)
        assert line not in result.stdout and line in result.stderr
    markdown = esq("ls", "--cache-dir", str(populated), "--format", "markdown").stdout
    assert markdown.rstrip("\n").endswith(line) and markdown.startswith("| backbone | weights | layer | source |")
    assert " entry |" not in markdown.splitlines()[0]  # the entry folder is for scripts (json, csv)


def test_a_miss_shows_progress_chunk_by_chunk_and_a_hit_shows_none(tmp_path):
    shown = []

    def progress(items, description, total):
        shown.append((description, total))
        return items

    cache = ActivationCache(tmp_path, chunk_size=4)
    for _ in range(2):
        cached_activations(cache, {"block1": key()}, COUNT, FakeExtract(), label="fake", log=LOG, progress=progress)
    cached_activations(
        None, {"block1": key()}, COUNT, FakeExtract(), label="fake", log=LOG, chunk_size=5, progress=progress
    )
    assert shown == [("fake: extracting", 3), ("fake: extracting", 2)]
