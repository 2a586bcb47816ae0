"""The activation cache under faults: a build killed with SIGKILL in the middle of a chunk write,
two builds of one entry at once, ``esq cache rm`` while a build runs, damaged ``key.json`` and
``entry.json``, and a cache folder that cannot be one. Builds run in real subprocesses."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from esq.builtin.cache import ActivationCache, cached_activations
from esq.cli.main import make_cli

COUNT, CHUNK = 10, 4
KEY = {"backbone": "fake", "layer": "block1", "set": "reference", "images": "abc", "degradation": None}

# A build of KEY in its own process. PAUSE_AT names the chunk at which it stops and waits for the
# file ``go`` (``stage`` tells when): "write" pauses inside write_atomic with the temporary chunk
# written and not yet renamed, "extract" before the chunk is extracted.
BUILDER = textwrap.dedent(
    """
    import logging, os, sys, time
    from pathlib import Path
    import numpy as np
    import esq.files
    from esq.builtin.cache import ActivationCache, cached_activations

    root, pause_at, where = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    stage, go = root.parent / "stage", root.parent / "go"

    def wait():
        stage.write_text(where)
        while not go.exists():
            time.sleep(0.02)

    replace = os.replace
    def slow_replace(source, target):
        if where == "write" and Path(target).name == f"chunk_{pause_at:05d}.npy":
            wait()
        replace(source, target)
    esq.files.os.replace = slow_replace

    def extract(start, stop, layers):
        if where == "extract" and start == pause_at * 4:
            wait()
        return {layer: np.arange(start * 12, stop * 12, dtype=np.float32).reshape(-1, 3, 2, 2) for layer in layers}

    key = {"backbone": "fake", "layer": "block1", "set": "reference", "images": "abc", "degradation": None}
    logging.basicConfig(level=logging.INFO)
    cached_activations(ActivationCache(root, chunk_size=4), {"block1": key}, 10, extract, label="x",
                       log=logging.getLogger("builder"))
    print("built")
    """
)


def start_builder(tmp_path: Path, pause_at: int, where: str) -> subprocess.Popen:
    script = tmp_path / "builder.py"
    script.write_text(BUILDER)
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "cache"), str(pause_at), where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "stage").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the builder never reached its pause"
        time.sleep(0.02)
    return process


def release(tmp_path: Path, process: subprocess.Popen) -> str:
    (tmp_path / "go").touch()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out


def expected(start: int, stop: int) -> np.ndarray:
    return np.arange(start * 12, stop * 12, dtype=np.float32).reshape(-1, 3, 2, 2)


class Extract:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, stop: int, layers: list[str]) -> dict[str, np.ndarray]:
        self.calls.append((start, stop))
        return {layer: expected(start, stop) for layer in layers}


def build_here(root: Path, extract: Extract) -> list[np.ndarray]:
    found = cached_activations(
        ActivationCache(root, chunk_size=CHUNK), {"block1": KEY}, COUNT, extract, label="x", log=logging.getLogger("t")
    )
    return found["block1"]


def cache_cli(*arguments: str):
    return CliRunner().invoke(make_cli(), ["cache", *arguments])


def listed(root: Path) -> list[dict]:
    result = cache_cli("ls", "--cache-dir", str(root), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_build_killed_inside_a_chunk_write_resumes_without_its_temporary_file(tmp_path):
    root = tmp_path / "cache"
    process = start_builder(tmp_path, pause_at=1, where="write")
    entry = ActivationCache(root, chunk_size=CHUNK).entry(KEY)
    assert next(path.name for path in entry.leftovers()).startswith(".chunk_00001.npy.")  # the kill comes mid-write
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    (row,) = listed(root)
    assert row["status"] == "incomplete (1 chunks)"
    extract = Extract()
    chunks = build_here(root, extract)
    assert extract.calls == [(4, 8), (8, 10)]  # chunk 0 kept, the half-written chunk 1 redone
    assert np.array_equal(np.concatenate(chunks), expected(0, COUNT))
    assert entry.leftovers() == [] and not list(root.rglob("*.tmp"))
    (row,) = listed(root)
    assert row["status"] == "complete" and row["count"] == COUNT
    assert row["MB"] == round(sum(path.stat().st_size for path in entry.directory.iterdir()) / 2**20, 2)


def test_a_second_build_of_an_entry_waits_for_the_first_and_reads_what_it_stored(tmp_path, caplog):
    root = tmp_path / "cache"
    process = start_builder(tmp_path, pause_at=1, where="extract")
    extract, found = Extract(), {}
    with caplog.at_level(logging.INFO, logger="t"):
        second = threading.Thread(target=lambda: found.update(chunks=build_here(root, extract)))
        second.start()
        deadline = time.monotonic() + 30
        while "waiting for another process building cache entry" not in caplog.text:
            assert time.monotonic() < deadline and second.is_alive()
            time.sleep(0.02)
        assert release(tmp_path, process).strip() == "built"
        second.join(timeout=60)
    assert extract.calls == []  # the second build found the first one's entry complete
    assert np.array_equal(np.concatenate(found["chunks"]), expected(0, COUNT))
    assert [row["status"] for row in listed(root)] == ["complete"]


def test_rm_during_a_build_refuses_naming_the_entry_and_the_build_completes(tmp_path):
    root = tmp_path / "cache"
    process = start_builder(tmp_path, pause_at=1, where="extract")
    entry = ActivationCache(root, chunk_size=CHUNK).entry(KEY)
    result = cache_cli("rm", "--all", "--cache-dir", str(root))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert f"cache entry fake/block1/{entry.directory.name} is being built by another process" in result.stderr
    assert "unexpected" not in result.output and "Traceback" not in result.output
    release(tmp_path, process)
    (row,) = listed(root)
    assert row["status"] == "complete" and row["count"] == COUNT
    assert cache_cli("rm", "--all", "--cache-dir", str(root)).exit_code == 0 and listed(root) == []


@pytest.mark.parametrize("name", ["key.json", "entry.json"])
@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_a_damaged_entry_file_is_shown_as_damaged_and_rm_removes_it(tmp_path, name, content):
    root = tmp_path / "cache"
    build_here(root, Extract())
    other = {**KEY, "images": "def"}
    cached_activations(
        ActivationCache(root, chunk_size=CHUNK), {"block1": other}, COUNT, Extract(), label="y", log=logging.getLogger()
    )
    damaged = ActivationCache(root, chunk_size=CHUNK).entry(KEY)
    (damaged.directory / name).write_text(content)
    rows = {row["entry"]: row for row in listed(root)}
    assert len(rows) == 2
    assert rows[damaged.directory.name]["status"].startswith(f"damaged: {damaged.directory / name}")
    assert [row["status"] for entry, row in rows.items() if entry != damaged.directory.name] == ["complete"]
    table = cache_cli("ls", "--cache-dir", str(root))
    assert table.exit_code == 0 and "damaged" in table.stdout
    removed = cache_cli("rm", "--backbone", "fake", "--cache-dir", str(root))
    assert removed.exit_code == 0 and "removed 2 cache entries" in removed.stdout
    assert listed(root) == []


def test_a_damaged_key_json_is_rewritten_by_the_next_build(tmp_path):
    root = tmp_path / "cache"
    entry = ActivationCache(root, chunk_size=CHUNK).entry(KEY)
    entry.directory.mkdir(parents=True)
    (entry.directory / "key.json").write_text("{not json")
    build_here(root, Extract())
    assert entry.key["images"] == "abc"
    assert [row["status"] for row in listed(root)] == ["complete"]


def test_a_cache_folder_that_is_a_file_is_one_line_for_every_command(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for arguments in (["ls"], ["rm", "--all"]):
        result = cache_cli(*arguments, "--cache-dir", str(afile))
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
        assert str(afile) in result.stderr and "not a folder" in result.stderr
    result = cache_cli("ls", "--cache-dir", str(tmp_path / "missing"))
    assert result.exit_code == 0 and "empty" in result.stdout


@pytest.mark.parametrize("where", ["afile", "afile/below"])
def test_a_cache_dir_where_no_folder_can_be_is_refused_before_a_degradation_run(tmp_path, where, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.chdir(tmp_path)
    settings = ["mode=quick", "backbones=tiny", f"cache_dir={tmp_path / where}", "metrics=mean_shift"]
    arguments = [f"--set={setting}" for setting in settings]
    plugin = ["--plugin", str(Path(__file__).with_name("fake_plugin.py"))]
    result = CliRunner().invoke(make_cli(), ["run", "degradation", *arguments, *plugin, "--output-dir", "runs"])
    assert result.exit_code == 1 and f"cache_dir {tmp_path / where}: {tmp_path / 'afile'} is a file" in result.stderr
    assert not (tmp_path / "runs").exists()
    built = CliRunner().invoke(make_cli(), ["cache", "build", *arguments, *plugin])
    assert built.exit_code == 1 and "is a file, not a folder" in built.stderr and "unexpected" not in built.output


def test_a_cache_dir_that_cannot_be_written_is_refused_naming_it(tmp_path, monkeypatch):
    from esq.builtin import cache
    from esq.errors import ConfigError

    monkeypatch.setattr(cache.os, "access", lambda path, mode: False)  # root may write anywhere: ask as a user
    with pytest.raises(ConfigError, match=f"cache_dir {tmp_path / 'sub'}: {tmp_path} is not writable"):
        cache.check_root(tmp_path / "sub")


@pytest.mark.parametrize(
    ("chunk", "holds"),
    [
        (expected(0, CHUNK).reshape(CHUNK, 2, 2, 3), "float32 (4, 2, 2, 3)"),  # as many numbers, another shape
        (expected(0, CHUNK).astype(np.float64), "float64 (4, 3, 2, 2)"),
    ],
    ids=["another_shape", "another_dtype"],
)
def test_a_chunk_of_the_right_length_but_another_shape_or_dtype_is_damaged_naming_it(tmp_path, chunk, holds):
    from esq import DataError

    root = tmp_path / "cache"
    build_here(root, Extract())
    entry = ActivationCache(root, chunk_size=CHUNK).entry(KEY)
    np.save(entry.chunk_path(0), chunk)
    with pytest.raises(
        DataError, match=re.escape(f"chunk_00000.npy holds {holds}") + ".*esq cache rm --backbone fake"
    ) as caught:
        entry.chunks()
    assert "entry.json says float32 (count, 3, 2, 2)" in str(caught.value)
