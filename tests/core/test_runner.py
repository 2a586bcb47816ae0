"""The run directory: resolved config, results.json, tidy results.csv, log; atomic writes."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass

import pytest

import fake_plugin
from esq import ConfigError, PipelineConfig, PipelineSpec, PluginError, load_plugins
from esq.config import read_toml
from esq.runner import rows_to_csv, run_pipeline

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


def test_a_failing_run_writes_no_results_and_logs_the_traceback(tmp_path):
    def fail(config, context):
        raise RuntimeError("out of memory")

    spec = PipelineSpec(name="fails", config=PipelineConfig, run=fail, summary="Fails")
    with pytest.raises(RuntimeError):
        run_pipeline(spec, PipelineConfig(), tmp_path, PLUGINS)
    (directory,) = (tmp_path / "fails").iterdir()
    assert not (directory / "results.json").exists()
    log = (directory / "run.log").read_text()
    assert "Traceback" in log and "RuntimeError: out of memory" in log


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
    monkeypatch.setenv("ESQ_RUN_DIRECTORY", str(shared))
    monkeypatch.setenv("LOCAL_RANK", "1")
    run = run_pipeline(ECHO, fake_plugin.EchoConfig(label="worker"), tmp_path, PLUGINS)
    assert run.worker and run.directory == shared
    assert sorted(p.name for p in shared.iterdir()) == ["note.txt", "run-rank1.log"]
    monkeypatch.setenv("LOCAL_RANK", "0")
    first = run_pipeline(ECHO, fake_plugin.EchoConfig(), tmp_path, PLUGINS)
    assert not first.worker and first.directory != shared and (first.directory / "results.json").is_file()
