"""How `esq run` ends: its exit code, the line on stderr, and the status results.json records,
for a partial result, a signal, a pipeline that exits, and the file system refusing a write."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from esq import DataError, error_line
from esq.cli.main import make_cli

PIPELINES = """
import os, sys, time
from esq import PipelineConfig, PipelineSpec, Results, failed_row, hookimpl

def partial(config, context):
    return Results(rows=[{"model": "a", "score": 0.5}, failed_row(ValueError("b.pt: unreadable"), model="b")])

def wait(config, context):
    context.path("started").write_text(str(os.getpid()))
    time.sleep(60)
    return Results(rows=[{"never": 1}])

def exits(config, context):
    sys.exit(0)

class Weird:
    pass

class OwnBase(BaseException):
    pass

ODD = {
    "object": lambda: Results(rows=[{"value": Weird()}]),
    "key": lambda: Results(rows=[{1: "a"}]),
    "rows": lambda: Results(rows="abc"),
    "table": lambda: Results(rows=[{"a": 1}], table="x"),
    "summary": lambda: Results(rows=[{"a": 1}], summary={"seen": {1, 2}}),
}

def odd(config, context):
    return ODD[os.environ["ODD"]]()

def raises(config, context):
    raise {"keyboard": KeyboardInterrupt, "own": OwnBase}[os.environ["RAISE"]]("raised by the pipeline")

@hookimpl
def esq_pipelines():
    return [PipelineSpec(name=name, config=PipelineConfig, run=run, summary=name)
            for name, run in (("partial", partial), ("wait", wait), ("exits", exits), ("odd", odd), ("raises", raises))]
"""


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "ending_plugin.py"
    path.write_text(PIPELINES)
    return str(path)


def esq(*args: str):
    return CliRunner().invoke(make_cli(), list(args), catch_exceptions=False)


def results_of(output_dir: Path, pipeline: str) -> dict:
    (directory,) = (output_dir / pipeline).iterdir()
    return json.loads((directory / "results.json").read_text())


def test_some_failed_rows_print_the_table_and_exit_3(tmp_path, plugin):
    result = esq("run", "partial", "--plugin", plugin, "--output-dir", str(tmp_path / "runs"))
    assert result.exit_code == 3
    assert "b.pt: unreadable" in result.stdout and "0.5" in result.stdout
    assert "1 of 2 result rows failed" in result.stderr
    assert results_of(tmp_path / "runs", "partial")["status"] == "partial"


def test_a_pipeline_calling_sys_exit_0_is_a_failure(tmp_path, plugin):
    result = esq("run", "exits", "--plugin", plugin, "--output-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1 and "called sys.exit(0)" in result.stderr
    assert "unexpected" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_ends_the_run_with_128_plus_its_number_and_a_line(tmp_path, plugin, signum):
    output_dir = tmp_path / "runs"
    command = [sys.executable, "-m", "esq", "run", "wait", "--plugin", plugin, "--output-dir", str(output_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(output_dir.glob("wait/*/started")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum
    assert stderr == f"Error: interrupted by {name}\n"
    document = results_of(output_dir, "wait")
    assert document["status"] == "interrupted" and name in document["error"]
    (directory,) = (output_dir / "wait").iterdir()
    assert f"interrupted by {name}" in (directory / "run.log").read_text()
    assert sorted(path.name for path in directory.iterdir()) == [
        "config.toml",
        "results.csv",
        "results.json",
        "run.log",
        "started",
    ]


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.EACCES, "make it writable or choose another folder"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "the disk is full"),
    ],
)
def test_a_folder_the_system_refuses_is_named_with_the_fix(tmp_path, plugin, monkeypatch, code, fix):
    refused = tmp_path / "runs" / "partial"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == refused:
            raise OSError(code, os.strerror(code), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    result = esq("run", "partial", "--plugin", plugin, "--output-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {refused}: ") and fix in result.stderr
    assert "unexpected" not in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("output_dir", ["a-file/runs", "b" * 300])
def test_an_output_dir_the_file_system_cannot_hold_is_one_line(tmp_path, plugin, monkeypatch, output_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    result = esq("run", "partial", "--plugin", plugin, "--output-dir", output_dir)
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {output_dir}")
    assert "unexpected" not in result.stderr and result.stderr.count("\n") == 1


class RaisesInAWorker:
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise DataError(f"image {index}.png: truncated file; re-encode it or set on_unreadable='skip'")


def test_an_error_in_a_dataloader_worker_is_the_line_it_gives_without_workers():
    from torch.utils.data import DataLoader

    lines = []
    for workers in (0, 1):
        with pytest.raises(DataError) as caught:
            next(iter(DataLoader(RaisesInAWorker(), num_workers=workers)))
        lines.append(error_line(caught.value))
    assert lines[0] == lines[1] == "image 0.png: truncated file; re-encode it or set on_unreadable='skip'"


def _sleep() -> None:
    time.sleep(30)


def test_a_forked_worker_ends_on_a_signal_as_without_esq():
    import multiprocessing

    from esq.runner import interruptible

    with interruptible():
        child = multiprocessing.get_context("fork").Process(target=_sleep)
        child.start()
        time.sleep(0.2)
        os.kill(child.pid, signal.SIGTERM)
        child.join(timeout=10)
    assert child.exitcode == -signal.SIGTERM


def test_a_message_over_several_lines_prints_as_one():
    assert error_line(DataError("weights.pt: not a checkpoint:\n  torch says\n\tno")) == (
        "weights.pt: not a checkpoint: torch says no"
    )


@pytest.mark.parametrize(
    ("odd", "message"),
    [
        ("object", "Results.rows[0]['value'] cannot be saved: Object of type Weird is not JSON serializable"),
        ("key", "Results.rows[0] has key 1; keys are strings"),
        ("rows", "Results.rows that is not a list of dicts"),
        ("table", "Results.table that is not a list of dicts"),
        ("summary", "Results.summary cannot be saved"),
    ],
)
def test_results_that_cannot_be_saved_are_the_plugins_error(tmp_path, plugin, monkeypatch, odd, message):
    monkeypatch.setenv("ODD", odd)
    result = esq("run", "odd", "--plugin", plugin, "--output-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1 and message in result.stderr and "pipeline 'odd'" in result.stderr
    assert "unexpected" not in result.stderr and result.stderr.count("\n") == 1
    document = results_of(tmp_path / "runs", "odd")
    assert document["status"] == "failed" and message in document["error"]


def test_a_keyboard_interrupt_raised_by_code_is_an_interruption(tmp_path, plugin, monkeypatch):
    monkeypatch.setenv("RAISE", "keyboard")
    command = [sys.executable, "-m", "esq", "run", "raises", "--plugin", plugin, "--output-dir", str(tmp_path / "runs")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 130 and finished.stderr == "Error: interrupted by SIGINT\n"
    assert results_of(tmp_path / "runs", "raises")["status"] == "interrupted"


def test_a_base_exception_of_the_plugins_own_is_one_line(tmp_path, plugin, monkeypatch):
    monkeypatch.setenv("RAISE", "own")
    result = esq("run", "raises", "--plugin", plugin, "--output-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1 and "raised OwnBase (a BaseException): raised by the pipeline" in result.stderr
    assert results_of(tmp_path / "runs", "raises")["error"] is not None
