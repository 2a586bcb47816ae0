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
    rows = json.loads(
        esq(
            "run",
            "demo",
            "--json",
            "--set",
            "steps=30",
            "--set",
            "samples=256",
            "--set",
            "quantizers=random_projection",
            "--set",
            "metrics=mean_cosine",
            "--set",
            "quantizer_options.random_projection.bits=32",
            cwd=tmp_path,
        )
    )
    assert [(row["quantizer"], row["metric"], row["bits_per_vector"]) for row in rows] == [
        ("random_projection", "mean_cosine", 32.0)
    ]
    assert 0.3 < rows[0]["value"] <= 1.0
    (run,) = (tmp_path / "runs" / "demo").iterdir()
    assert (run / "results.csv").read_text().startswith("quantizer,metric,value")
