"""The activation cache: hits and misses, atomic chunks, resuming a killed build, float16, and
``esq cache ls`` / ``esq cache rm``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from esq.cache import ActivationCache, cached_activations, default_root, key_digest, remove_entries
from esq.cli.main import make_cli
from esq.errors import ConfigError, DataError

LOG = logging.getLogger("esq.test")


def activations(start: int, stop: int) -> np.ndarray:
    return np.arange(start * 12, stop * 12, dtype=np.float32).reshape(stop - start, 3, 2, 2)


class Extractor:
    """A fake backbone: records the ranges it is asked for; optionally fails after some calls."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[tuple[int, int, list[str]]] = []
        self.fail_after = fail_after

    def __call__(self, start: int, stop: int, layers: list[str]) -> dict[str, np.ndarray]:
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append((start, stop, list(layers)))
        return {layer: activations(start, stop) + index for index, layer in enumerate(layers)}


def keys(*layers: str, images: str = "abc", degradation: dict | None = None) -> dict[str, dict]:
    return {
        layer: {"backbone": "fake", "layer": layer, "set": "reference", "images": images, "degradation": degradation}
        for layer in layers
    }


def gather(cache, extractor, count=10, **key_options):
    return cached_activations(cache, keys("a", "b", **key_options), count, extractor, label="fake", log=LOG)


def test_a_miss_extracts_and_stores_then_a_hit_reads_memory_mapped_without_extracting(tmp_path, caplog):
    cache = ActivationCache(tmp_path, chunk_size=4)
    first = Extractor()
    with caplog.at_level(logging.INFO, logger="esq.test"):
        built = gather(cache, first)
    assert "CACHE MISS fake" in caplog.text and [call[:2] for call in first.calls] == [(0, 4), (4, 8), (8, 10)]
    assert [len(chunk) for chunk in built["a"]] == [4, 4, 2]
    assert np.array_equal(np.concatenate(built["a"]), activations(0, 10))
    assert np.array_equal(np.concatenate(built["b"]), activations(0, 10) + 1)
    caplog.clear()
    second = Extractor()
    with caplog.at_level(logging.INFO, logger="esq.test"):
        read = gather(cache, second)
    assert "CACHE HIT fake" in caplog.text and "CACHE MISS" not in caplog.text and second.calls == []
    assert all(isinstance(chunk, np.memmap) and not chunk.flags.writeable for chunk in read["a"])
    assert np.array_equal(np.concatenate(read["b"]), activations(0, 10) + 1)


def test_without_a_cache_everything_is_extracted_in_memory(tmp_path):
    extractor = Extractor()
    result = cached_activations(None, keys("a"), 5, extractor, label="fake", log=LOG, chunk_size=2)
    assert np.array_equal(np.concatenate(result["a"]), activations(0, 5))
    assert len(extractor.calls) == 3 and list(tmp_path.iterdir()) == []


def test_a_killed_build_leaves_no_valid_entry_and_resumes_where_it_stopped(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    with pytest.raises(KeyboardInterrupt):
        gather(cache, Extractor(fail_after=2))
    entry = cache.entry(keys("a")["a"])
    assert not entry.complete
    with pytest.raises(DataError, match="incomplete"):
        entry.chunks()
    assert [path.name for path in entry.chunk_paths()] == ["chunk_00000.npy", "chunk_00001.npy"]
    assert not [path for path in entry.directory.iterdir() if path.name.endswith(".tmp")]
    resumed = Extractor()
    result = gather(cache, resumed)
    assert [call[:2] for call in resumed.calls] == [(8, 10)]
    assert np.array_equal(np.concatenate(result["a"]), activations(0, 10)) and entry.complete


def test_a_corrupt_chunk_of_an_unfinished_entry_is_extracted_again(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    with pytest.raises(KeyboardInterrupt):
        gather(cache, Extractor(fail_after=2))
    for layer in ("a", "b"):
        cache.entry(keys(layer)[layer]).chunk_path(1).write_bytes(b"garbage")
    resumed = Extractor()
    result = gather(cache, resumed)
    assert [call[:2] for call in resumed.calls] == [(4, 8), (8, 10)]
    assert np.array_equal(np.concatenate(result["a"]), activations(0, 10))


def test_float16_storage_is_its_own_entry(tmp_path):
    half, full = ActivationCache(tmp_path, dtype="float16"), ActivationCache(tmp_path)
    stored = gather(half, Extractor())
    assert stored["a"][0].dtype == np.float16
    assert half.entry(keys("a")["a"]).directory != full.entry(keys("a")["a"]).directory
    assert half.entry(keys("a")["a"]).info["dtype"] == "float16"


@pytest.mark.parametrize(
    ("options", "message"),
    [({"dtype": "float64"}, "cache dtype 'float64'"), ({"chunk_size": 0}, "chunk_size must be at least 1")],
)
def test_bad_cache_options(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        ActivationCache(tmp_path, **options)


def test_every_part_of_the_key_changes_the_entry_and_key_order_does_not(tmp_path):
    cache = ActivationCache(tmp_path)
    base = keys("a")["a"]
    variants = [
        base,
        {**base, "layer": "b"},
        {**base, "images": "other"},
        {**base, "degradation": {"type": "gaussian_blur", "level": 1}},
        {**base, "degradation": {"type": "gaussian_blur", "level": 2}},
    ]
    assert len({cache.entry(key).directory for key in variants}) == len(variants)
    assert key_digest(dict(reversed(list(base.items())))) == key_digest(base)


def test_entries_list_complete_and_incomplete_ones_with_their_keys(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    gather(cache, Extractor(), images="done")
    with pytest.raises(KeyboardInterrupt):
        gather(cache, Extractor(fail_after=1), images="killed")
    entries = cache.entries()
    assert sorted((entry.key["images"], entry.complete) for entry in entries) == [
        ("done", True),
        ("done", True),
        ("killed", False),
        ("killed", False),
    ]
    info = next(entry for entry in entries if entry.complete).info
    assert info["count"] == 10 and info["shape"] == [3, 2, 2] and info["chunks"] == 3
    assert remove_entries(entries) == 4 and cache.entries() == []


def test_default_root_follows_esq_cache_dir_then_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ESQ_CACHE_DIR", str(tmp_path / "esq"))
    assert default_root() == tmp_path / "esq"
    monkeypatch.delenv("ESQ_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "esq" / "activations"


def test_notes_round_trip_by_key(tmp_path):
    cache = ActivationCache(tmp_path)
    assert cache.read_note({"backbone": "fake"}) is None
    cache.write_note({"backbone": "fake"}, {"preprocess": "none", "layers": ["a"]})
    assert cache.read_note({"backbone": "fake"}) == {"preprocess": "none", "layers": ["a"]}
    assert cache.entries() == []  # notes are not entries


def esq(*args: str):
    return CliRunner().invoke(make_cli(), list(args))


def test_cache_ls_and_rm_from_the_command_line(tmp_path):
    cache = ActivationCache(tmp_path, chunk_size=4)
    gather(cache, Extractor())
    blurred = {"type": "gaussian_blur", "level": 2}
    cached_activations(cache, keys("a", degradation=blurred), 10, Extractor(), label="fake", log=LOG)
    with pytest.raises(KeyboardInterrupt):
        cached_activations(cache, keys("c", images="killed"), 10, Extractor(fail_after=1), label="fake", log=LOG)
    listed = json.loads(esq("cache", "ls", "--cache-dir", str(tmp_path), "--json").stdout)
    assert sorted((row["layer"], row["images"], row["status"]) for row in listed) == [
        ("a", "gaussian_blur 2", "complete"),
        ("a", "reference", "complete"),
        ("b", "reference", "complete"),
        ("c", "reference", "incomplete (1 chunks)"),
    ]
    assert {row["count"] for row in listed if row["status"] == "complete"} == {10}

    refused = esq("cache", "rm", "--cache-dir", str(tmp_path))
    assert refused.exit_code == 2 and "--backbone, --layer, --incomplete, or --all" in refused.output
    removed = esq("cache", "rm", "--cache-dir", str(tmp_path), "--incomplete")
    assert removed.exit_code == 0 and "removed 1 cache entries" in removed.output
    assert esq("cache", "rm", "--cache-dir", str(tmp_path), "--layer", "b").output.startswith("removed 1 ")
    assert esq("cache", "rm", "--cache-dir", str(tmp_path), "--all").output.startswith("removed 2 ")
    assert "empty" in esq("cache", "ls", "--cache-dir", str(tmp_path)).output
