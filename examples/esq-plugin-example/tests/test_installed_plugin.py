"""The plugin installed as a user would install it: found through its entry point, listed,
and run in a pipeline, all through the `esq` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ESQ = [sys.executable, "-m", "esq"]


def esq(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run([*ESQ, *args], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_example_plugin_is_listed_with_its_distribution():
    plugins = json.loads(esq("plugins", "--json"))
    example = next(row for row in plugins if row["name"] == "example")
    assert example["distribution"] == "esq-plugin-example" and example["status"] == "loaded"
    quantizers = json.loads(esq("list", "quantizers", "--json"))
    assert "random_projection" in [row["name"] for row in quantizers]


def test_example_components_run_in_the_demo_pipeline(tmp_path):
    """The demo trains a head on esq-backbones' tiny CNN with and without the example quantizer."""
    options = ["--quantizers", "random_projection", "--metrics", "mean_cosine", "--epochs", "1"]
    options += ["--synthetic-size", "20", "--image-size", "32", "--set", "quantizer_options.random_projection.bits=32"]
    rows = json.loads(esq("run", "demo", *options, "--json", cwd=tmp_path))
    values = {(row["model"], row["metric"]): row["value"] for row in rows}
    assert {row["bits_per_vector"] for row in rows if row["model"] == "random_projection"} == {32.0}
    # a random projection keeps little of the features: below the baseline's 1
    assert values["baseline", "mean_cosine"] == 1.0 and -1.0 <= values["random_projection", "mean_cosine"] < 1.0
    (run,) = (tmp_path / "runs" / "demo").iterdir()
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"model", "metric", "value", "bits_per_vector"} <= set(header)
