"""The run directory: resolved config, results.json, tidy results.csv, log; atomic writes."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass

import pytest

import fake_plugin
from esq import (
    ConfigError,
    DataError,
    PipelineConfig,
    PipelineSpec,
    PluginError,
    Results,
    RunInterrupted,
    failed_row,
    load_plugins,
)
from esq.config import read_toml
from esq.output import rows_to_csv
from esq.run_directories import hold
from esq.runner import run_pipeline

ECHO = PipelineSpec(name="echo", config=fake_plugin.EchoConfig, run=fake_plugin.echo, summary="Echo")
PLUGINS = load_plugins([], environ={})


def test_a_config_the_check_refuses_leaves_no_run_directory(tmp_path):
    seen = []

    def refuse(config, plugins):
        seen.append(plugins)
        raise ConfigError("label: refused")

    spec = PipelineSpec(name="echo", config=fake_plugin.EchoConfig, run=fake_plugin.echo, summary="Echo", check=refuse)
    with pytest.raises(ConfigError, match="label: refused"):
        run_pipeline(spec, fake_plugin.EchoConfig(), tmp_path, PLUGINS)
    assert seen == [PLUGINS]
    assert list(tmp_path.iterdir()) == []


def test_the_pipeline_reaches_components_through_its_context(tmp_path):
    found = {}

    def run(config, context):
        found["pipelines"] = context.registry("pipelines").names()
        return fake_plugin.echo(config, context)

    spec = PipelineSpec(name="echo", config=fake_plugin.EchoConfig, run=run, summary="Echo")
    run_pipeline(spec, fake_plugin.EchoConfig(), tmp_path, PLUGINS)
    assert found["pipelines"] == PLUGINS.registry("pipelines").names()


def test_run_directory_holds_config_results_csv_log_and_pipeline_files(tmp_path):
    run = run_pipeline(ECHO, fake_plugin.EchoConfig(rows=3, label="hi", name="first", seed=4), tmp_path, PLUGINS)
    assert run.directory.parent == tmp_path / "echo"
    assert re.fullmatch(r"\d{8}-\d{6}-first", run.directory.name)
    assert sorted(p.name for p in run.directory.iterdir()) == [
        "config.toml",
        "note.txt",
        "results.csv",
        "results.json",
        "run.log",
    ]
    assert read_toml(run.directory / "config.toml")["rows"] == 3
    document = json.loads((run.directory / "results.json").read_text())
    assert document["pipeline"] == "echo" and document["config"]["label"] == "hi"
    assert document["rows"] == [{"row": i, "label": "hi"} for i in range(3)]
    assert document["summary"] == {"seed": 4}
    with open(run.directory / "results.csv", newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"row": str(i), "label": "hi"} for i in range(3)]
    assert "run echo" in (run.directory / "run.log").read_text()


def test_two_runs_in_the_same_second_get_different_directories(tmp_path):
    config = fake_plugin.EchoConfig()
    first, second = (run_pipeline(ECHO, config, tmp_path, PLUGINS).directory for _ in range(2))
    assert first != second and first.name.endswith("-echo")


def _document(tmp_path, pipeline):
    (directory,) = (tmp_path / pipeline).iterdir()
    return directory, json.loads((directory / "results.json").read_text())


def test_a_failing_run_records_failed_with_its_reason_and_logs_the_traceback(tmp_path):
    def fail(config, context):
        raise RuntimeError("out of memory")

    spec = PipelineSpec(name="fails", config=PipelineConfig, run=fail, summary="Fails")
    with pytest.raises(RuntimeError):
        run_pipeline(spec, PipelineConfig(), tmp_path, PLUGINS)
    directory, document = _document(tmp_path, "fails")
    assert document["status"] == "failed" and "out of memory" in document["error"]
    log = (directory / "run.log").read_text()
    assert "Traceback" in log and "RuntimeError: out of memory" in log


@pytest.mark.parametrize(
    ("rows", "message"),
    [([], "produced no result rows"), ([failed_row(ValueError("k too large"), model="a")], "every result row failed")],
)
def test_a_run_without_a_computed_row_is_a_failure(tmp_path, rows, message):
    spec = PipelineSpec(
        name="empty", config=PipelineConfig, run=lambda config, context: Results(rows=rows), summary="E"
    )
    with pytest.raises(DataError, match=message):
        run_pipeline(spec, PipelineConfig(), tmp_path, PLUGINS)
    _, document = _document(tmp_path, "empty")
    assert document["status"] == "failed" and document["rows"] == rows


def test_failed_rows_keep_the_rest_and_mark_the_run_partial(tmp_path):
    rows = [{"model": "a", "score": 0.5}, failed_row(ValueError("unreadable checkpoint b.pt"), model="b")]
    spec = PipelineSpec(name="some", config=PipelineConfig, run=lambda config, context: Results(rows=rows), summary="S")
    run = run_pipeline(spec, PipelineConfig(), tmp_path, PLUGINS)
    assert run.results.status == "partial"
    _, document = _document(tmp_path, "some")
    assert document["status"] == "partial"
    assert [row["status"] for row in document["rows"]] == ["ok", "failed"]
    assert "unreadable checkpoint b.pt" in document["rows"][1]["error"]
    assert "status,error" in (run.directory / "results.csv").read_text().splitlines()[0]


def test_a_pipeline_calling_sys_exit_is_a_plugin_error(tmp_path):
    spec = PipelineSpec(name="exits", config=PipelineConfig, run=lambda config, context: sys.exit(0), summary="X")
    with pytest.raises(PluginError, match=r"called sys.exit\(0\)"):
        run_pipeline(spec, PipelineConfig(), tmp_path, PLUGINS)
    assert _document(tmp_path, "exits")[1]["status"] == "failed"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_run_as_interrupted(tmp_path, signum):
    def wait_for_signal(config, context):
        os.kill(os.getpid(), signum)
        time.sleep(5)
        return Results(rows=[{"never": 1}])

    spec = PipelineSpec(name="slow", config=PipelineConfig, run=wait_for_signal, summary="Slow")
    with pytest.raises(RunInterrupted) as caught:
        run_pipeline(spec, PipelineConfig(), tmp_path, PLUGINS)
    assert caught.value.exit_code == 128 + signum
    directory, document = _document(tmp_path, "slow")
    assert document["status"] == "interrupted" and signal.Signals(signum).name in document["error"]
    assert "interrupted" in (directory / "run.log").read_text()
    assert signal.getsignal(signum) is not None and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize(
    "environment",
    [{"LOCAL_RANK": "1"}, {"LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "NO_CONFIG": "1"}],
)
def test_a_rank_process_outside_a_multi_process_launch_is_refused(tmp_path, monkeypatch, environment):
    shared = tmp_path / "shared"
    shared.mkdir()
    if "NO_CONFIG" not in environment:
        (shared / "config.toml").write_text("")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ESQ_RUN_DIRECTORY", str(shared))
    with pytest.raises(ConfigError, match="not started by a multi-process run.*unset ESQ_RUN_DIRECTORY"):
        run_pipeline(ECHO, fake_plugin.EchoConfig(), tmp_path, PLUGINS)


def test_a_pipeline_must_return_results(tmp_path):
    spec = PipelineSpec(name="bad", config=PipelineConfig, run=lambda config, context: {"x": 1}, summary="Bad")
    with pytest.raises(PluginError, match="pipeline 'bad' .* returned dict, expected esq.Results"):
        run_pipeline(spec, PipelineConfig(), tmp_path, PLUGINS)


def test_csv_columns_are_the_union_of_row_keys_in_order():
    assert rows_to_csv([{"a": 1}, {"b": 2, "a": 3}]) == "a,b\n1,\n3,2\n"


@dataclass
class SeedConfig(PipelineConfig):
    pass


def test_the_run_is_seeded_from_the_config(tmp_path):
    import numpy as np

    def draw(config, context):
        from esq import Results

        return Results(rows=[{"draw": float(np.random.rand())}])

    spec = PipelineSpec(name="draw", config=SeedConfig, run=draw, summary="Draw")
    first = run_pipeline(spec, SeedConfig(seed=5), tmp_path, PLUGINS).results.rows
    again = run_pipeline(spec, SeedConfig(seed=5), tmp_path, PLUGINS).results.rows
    other = run_pipeline(spec, SeedConfig(seed=6), tmp_path, PLUGINS).results.rows
    assert first == again != other


def test_results_record_the_plugins_and_files_get_the_usual_mode(tmp_path):
    import os

    run = run_pipeline(ECHO, fake_plugin.EchoConfig(), tmp_path, PLUGINS)
    document = json.loads((run.directory / "results.json").read_text())
    assert {"name": "esq", "distribution": "esq-core", "version": document["esq_version"], "source": "entry point"} in (
        document["plugins"]
    )
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.toml", "results.json", "results.csv"):
        assert (run.directory / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_further_ddp_process_works_in_the_shared_directory_and_reports_nothing(tmp_path, monkeypatch):
    shared = tmp_path / "echo" / "first-run"
    shared.mkdir(parents=True)
    (shared / "config.toml").write_text("")
    for name, value in {
        "ESQ_RUN_DIRECTORY": str(shared),
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "h",
    }.items():
        monkeypatch.setenv(name, value)
    run = run_pipeline(ECHO, fake_plugin.EchoConfig(label="worker"), tmp_path, PLUGINS)
    assert run.worker and run.directory == shared
    assert sorted(p.name for p in shared.iterdir()) == ["config.toml", "note.txt", "run-rank1.log"]
    monkeypatch.setenv("LOCAL_RANK", "0")
    first = run_pipeline(ECHO, fake_plugin.EchoConfig(), tmp_path, PLUGINS)
    assert not first.worker and first.directory != shared and (first.directory / "results.json").is_file()


def test_a_new_run_removes_what_killed_runs_left_but_not_a_live_runs_files(tmp_path):
    dead, live, starting = (tmp_path / "echo" / name for name in ("dead", "live", "starting"))
    for directory in (dead, live, starting):
        (directory / "sub").mkdir(parents=True)
        (directory / ".results.json.x1.tmp").write_text("half")
        (directory / "sub" / ".figure.png.x2.tmp").write_text("half")
    (dead / "run.log").write_text("killed\n")
    with open(live / "run.log", "w") as held:
        hold(held)
        run_pipeline(ECHO, fake_plugin.EchoConfig(), tmp_path, PLUGINS)
        assert not list(dead.rglob("*.tmp"))
        assert len(list(live.rglob("*.tmp"))) == len(list(starting.rglob("*.tmp"))) == 2


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("..", "writes only inside the run directory"),
        ("../elsewhere.png", "writes only inside the run directory"),
        ("/tmp/elsewhere.png", "writes only inside the run directory"),
        ("a/../../b", "writes only inside the run directory"),
        ("results.json", "the run's own results.json"),
        ("config.toml", "the run's own config.toml"),
        ("run.log", "the run's own run.log"),
    ],
)
def test_a_pipeline_writes_only_inside_its_run_directory(tmp_path, name, message):
    def write(config, context):
        context.path(name).write_text("x")
        return Results(rows=[{"wrote": name}])

    spec = PipelineSpec(name="writes", config=PipelineConfig, run=write, summary="Writes")
    with pytest.raises(ConfigError, match=message):
        run_pipeline(spec, PipelineConfig(), tmp_path / "runs", PLUGINS)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["runs"]


def test_a_symlink_out_of_the_run_directory_is_refused(tmp_path):
    def write(config, context):
        (context.directory / "link").symlink_to(tmp_path)
        context.path("link/escaped.txt").write_text("x")
        return Results(rows=[{"x": 1}])

    spec = PipelineSpec(name="links", config=PipelineConfig, run=write, summary="Links")
    with pytest.raises(ConfigError, match="writes only inside the run directory"):
        run_pipeline(spec, PipelineConfig(), tmp_path / "runs", PLUGINS)
    assert not (tmp_path / "escaped.txt").exists()
