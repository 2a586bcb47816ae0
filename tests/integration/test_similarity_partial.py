"""esq run similarity with esq-metrics' own metrics: one that cannot run on this many rows is a
failed row, and the others are kept (the run ends partial, exit 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from esq.cli.main import make_cli


def test_a_metric_that_cannot_run_on_this_many_rows_is_a_failed_row_and_the_others_are_kept(tmp_path, caplog):
    features = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, features)
    np.save(b, features + 1)
    options = ["--features-a", str(a), "--features-b", str(b), "--metrics", "cka", "jaccard_knn", "--json"]
    result = CliRunner().invoke(make_cli(), ["run", "similarity", *options, "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 3, result.output
    rows = {row["metric"]: row for row in json.loads(result.stdout)}
    assert rows["cka"]["status"] == "ok" and rows["cka"]["value"] == pytest.approx(1.0)
    assert rows["jaccard_knn"]["status"] == "failed" and "k=10" in rows["jaccard_knn"]["error"]
    (run,) = (tmp_path / "runs" / "similarity").iterdir()
    assert json.loads((run / "results.json").read_text())["status"] == "partial"
    warned = [record.getMessage() for record in caplog.records if "small N" in record.getMessage()]
    assert not any("jaccard_knn" in line for line in warned), warned  # it has no value to warn about
    written = json.loads((run / "similarity.json").read_text())
    assert written.pop("_esq")["samples"] == {"features": 10}
    assert written == {"features": {"cka": rows["cka"]["value"]}}


def test_a_small_n_warns_once_for_cka_and_once_for_pwcca_and_svcca(tmp_path, caplog):
    generator = np.random.default_rng(0)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, generator.normal(size=(12, 8)).astype(np.float32))
    np.save(b, generator.normal(size=(12, 8)).astype(np.float32))
    options = ["--features-a", str(a), "--features-b", str(b), "--metrics", "cka", "pwcca", "--json"]
    result = CliRunner().invoke(make_cli(), ["run", "similarity", *options, "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    lines = [record.getMessage() for record in caplog.records if "small N" in record.getMessage()]
    assert len(lines) == 2, lines
    assert "CKA (cka)" in lines[0] and "biased upward" in lines[0] and "N = 12 < 16" in lines[0]
    assert "CCA" in lines[1] and "(pwcca)" in lines[1] and "degenerate" in lines[1]
