"""esq run similarity with esq-metrics' own metrics: one that cannot run on this many rows is a
failed row, and the others are kept (the run ends partial, exit 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from esq.cli.main import make_cli


def test_a_metric_that_cannot_run_on_this_many_rows_is_a_failed_row_and_the_others_are_kept(tmp_path):
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
    assert json.loads((run / "similarity.json").read_text()) == {"features": {"cka": rows["cka"]["value"]}}
