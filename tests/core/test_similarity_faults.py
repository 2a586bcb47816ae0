"""``esq run similarity`` on bad input: every user mistake is one line on stderr naming the file or
option, with no run directory when it could be known before the run; what can be computed is kept
when one checkpoint or one metric cannot be (``failed`` rows, exit code 3)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from esq.cli.main import make_cli

FAKE = str(Path(__file__).with_name("fake_plugin.py"))
torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
TRAIN = ["--model", "tiny_segmenter", "--epochs", "1", "--synthetic-size", "20", "--image-size", "16"]


def esq(tmp_path: Path, *arguments: str):
    return CliRunner().invoke(make_cli(), [*arguments, "--plugin", FAKE, "--output-dir", str(tmp_path / "runs")])


def run_directories(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "runs" / "similarity"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def good(rows: int = 12) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(rows, 4)).astype(np.float32)


def write_npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=array.dtype == object)
    return path


def bad_files(folder: Path) -> dict[str, Path]:
    """One file per kind of bad content, next to a good ``b.npy``."""
    nan = good()
    nan[3, 1] = np.nan
    files = {
        "strings": write_npy(folder / "strings.npy", np.array([["a", "b"], ["c", "d"]])),
        "complex": write_npy(folder / "complex.npy", good().astype(np.complex64) * 1j),
        "ragged": write_npy(folder / "ragged.npy", np.array([[1.0, 2.0], [3.0]], dtype=object)),
        "nan": write_npy(folder / "nan.npy", nan),
        "fewer_rows": write_npy(folder / "fewer.npy", good(7)),
        "one_dimensional": write_npy(folder / "flat.npy", np.arange(12.0)),
        "b": write_npy(folder / "b.npy", good()),
    }
    torch.save({"features": torch.from_numpy(good()).to(torch.complex64)}, folder / "complex.pt")
    files["complex_pt"] = folder / "complex.pt"
    files["text_npy"] = folder / "text.npy"  # not a .npy at all: numpy would blame pickling
    files["text_npy"].write_text("1,2\n3,4\n")
    files["pickle_pt"] = folder / "pickle.pt"  # a plain pickle: torch.load(weights_only) refuses it at length
    files["pickle_pt"].write_bytes(pickle.dumps(good(), protocol=4))
    return files


RESULTS = {
    "a_string_value": {"vq": {"cka": "high"}},
    "a_list_value": {"vq": {"cka": [1]}},
    "a_boolean_value": {"vq": {"cka": True}},
    "no_models": {},
    "models_without_metrics": {"vq": {}},
    "a_list": [1, 2],
    "an_integer_no_float_holds": {"vq": {"cka": 10**400}},
    "only_null_values": {"vq": {"cka": None, "rsa": None}},
    "nested_too_deeply": "[" * 100_000 + "]" * 100_000,  # written as it is
    "of_another_pipeline": {"pipeline": "squeeze", "status": "ok", "rows": [{"model": "vq", "mean_iou": 0.5}]},
    "rows_not_a_list": {"pipeline": "similarity", "rows": {"vq": 1}},
    "a_row_value_not_a_number": {"pipeline": "similarity", "rows": [{"model": "vq", "metric": "cka", "value": "x"}]},
    "an_interval_not_numbers": {"vq": {"cka": 0.9}, "_esq": {"intervals": {"vq": {"cka": ["low", 1]}}}},
    "an_interval_upside_down": {"vq": {"cka": 0.9}, "_esq": {"intervals": {"vq": {"cka": [0.95, 0.85]}}}},
    "facts_not_a_dict": {"vq": {"cka": 0.9}, "_esq": [1]},
    "of_a_failed_run": {
        "pipeline": "similarity",
        "status": "failed",
        "error": "features_a a.npy: no such file",
        "rows": [],
    },
}

PAIR = ["--features-a", "{b}", "--features-b", "{b}"]
CASES = [
    ("strings", ["--features-a", "{strings}", "--features-b", "{b}"], "strings.npy"),
    ("complex", ["--features-a", "{complex}", "--features-b", "{b}"], "complex.npy"),
    ("complex_pt", ["--features-a", "{b}", "--features-b", "{complex_pt}"], "complex.pt"),
    ("ragged", ["--features-a", "{ragged}", "--features-b", "{b}"], "ragged.npy"),
    ("pickle_pt", ["--features-a", "{b}", "--features-b", "{pickle_pt}"], "pickle.pt: torch cannot read it"),
    ("nan", ["--features-a", "{b}", "--features-b", "{nan}"], "features_b"),
    ("text_npy", ["--features-a", "{text_npy}", "--features-b", "{b}"], "text.npy: not a .npy file"),
    ("fewer_rows", ["--features-a", "{b}", "--features-b", "{fewer_rows}"], "fewer.npy"),
    ("one_dimensional", ["--features-a", "{one_dimensional}", "--features-b", "{b}"], "flat.npy"),
    *[(f"results_{name}", ["--results", f"{{results_{name}}}"], f"results_{name}.json") for name in RESULTS],
    ("results_json_of_squeeze", ["--results", "{results_of_another_pipeline}"], "results.json of `esq run squeeze`"),
    ("results_json_of_a_failed_run", ["--results", "{results_of_a_failed_run}"], "that run was failed (features_a"),
    ("device_banana", [*PAIR, "--device", "banana"], "device"),
    ("output_results_json", [*PAIR, "--output", "results.json"], "output"),
    ("output_up", [*PAIR, "--output", "../x.json"], "output"),
    ("output_dots", [*PAIR, "--output", "..json"], None),
    ("visualize_up", [*PAIR, "--visualize", "../m.png"], "visualize"),
    ("unknown_option", [*PAIR, "--set", "metric_options.mean_distance.k=3"], "'k'"),
]


@pytest.mark.parametrize(("case", "arguments", "named"), CASES, ids=[case[0] for case in CASES])
def test_a_mistake_is_one_line_naming_it_and_leaves_no_run_directory(tmp_path, case, arguments, named):
    files = bad_files(tmp_path)
    for name, document in RESULTS.items():
        files[f"results_{name}"] = tmp_path / f"results_{name}.json"
        files[f"results_{name}"].write_text(document if isinstance(document, str) else json.dumps(document))
    arguments = [argument.format(**files) for argument in arguments]
    result = esq(tmp_path, "run", "similarity", *arguments, "--metrics", "mean_distance")
    if named is None:  # a legitimate, odd name: it stays inside the run directory
        assert result.exit_code == 0, result.output
        assert (run_directories(tmp_path)[0] / "..json").is_file() and not (tmp_path / "runs" / "x.json").exists()
        return
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert named in result.stderr
    assert "unexpected" not in result.output and "Traceback" not in result.output
    assert run_directories(tmp_path) == []


def test_the_cuda_device_without_one_is_refused_before_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    b = write_npy(tmp_path / "b.npy", good())
    result = esq(tmp_path, "run", "similarity", "--features-a", str(b), "--features-b", str(b), "--device", "cuda")
    assert result.exit_code == 1 and "device is 'cuda', but this machine has no cuda device" in result.stderr
    assert run_directories(tmp_path) == []


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    result = esq(root, "run", "squeeze", *TRAIN, "--quantizer", "rounding")
    assert result.exit_code == 0, result.output
    (run,) = sorted((root / "runs" / "squeeze").iterdir())
    return run / "checkpoints" / "best.ckpt"


def test_an_unreadable_checkpoint_is_a_failed_row_and_the_others_are_scored(tmp_path, checkpoint):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(checkpoint, folder / "good.ckpt")
    (folder / "broken.ckpt").write_bytes(b"not a checkpoint")
    options = ["--checkpoints-dir", str(folder), "--metrics", "mean_distance", "--json"]
    result = esq(tmp_path, "run", "similarity", *options)
    assert result.exit_code == 3, result.output
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert rows["good"]["status"] == "ok" and rows["good"]["metric"] == "mean_distance"
    assert rows["broken"]["status"] == "failed" and "broken.ckpt" in rows["broken"]["error"]
    assert "unexpected" not in rows["broken"]["error"]
    (run,) = run_directories(tmp_path)
    assert set(json.loads((run / "similarity.json").read_text())) == {"good", "_esq"}


def test_checkpoints_whose_stems_are_the_same_get_distinct_names_in_every_row(tmp_path, checkpoint):
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("model.ckpt", "model.pth", "model.pth.ckpt"):
        shutil.copy(checkpoint, folder / name)
    options = ["--checkpoints-dir", str(folder), "--metrics", "mean_distance", "--json"]
    result = esq(tmp_path, "run", "similarity", *options)
    assert result.exit_code in (0, 3), result.output  # the .pth copy is not the previous tool's format
    rows = json.loads(result.stdout)
    assert len({row["model"] for row in rows}) == len(rows) == 3
    (run,) = run_directories(tmp_path)
    models = json.loads((run / "results.json").read_text())["summary"]["models"]
    assert sorted(Path(facts["checkpoint"]).name for facts in models.values()) == sorted(
        ["model.ckpt", "model.pth", "model.pth.ckpt"]
    )


def test_a_sparse_tensor_file_is_read_as_its_dense_values(tmp_path):
    dense = torch.from_numpy(good())
    torch.save(dense.to_sparse(), tmp_path / "sparse.pt")
    b = write_npy(tmp_path / "b.npy", good())
    options = ["--features-a", str(b), "--features-b", str(tmp_path / "sparse.pt"), "--metrics", "mean_distance"]
    result = esq(tmp_path, "run", "similarity", *options, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("\n") == 1 and "Warning" not in result.stderr, result.stderr  # the run directory
    assert json.loads(result.stdout)[0]["value"] == pytest.approx(0.0)


def test_a_checkpoint_whose_file_name_is_not_utf8_is_scored_under_a_printable_name(tmp_path, checkpoint):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(checkpoint, os.fsdecode(bytes(folder) + b"/caf\xe9.ckpt"))
    result = esq(
        tmp_path, "run", "similarity", "--checkpoints-dir", str(folder), "--metrics", "mean_distance", "--json"
    )
    assert result.exit_code == 0, result.output
    assert [row["model"] for row in json.loads(result.stdout)] == ["caf\\xe9"]
    assert "Logging error" not in result.stderr and "unexpected" not in result.stderr, result.stderr
    (run,) = run_directories(tmp_path)
    assert (run / "metrics.png").is_file()


def test_a_checkpoint_whose_data_is_not_here_names_the_checkpoint_and_the_override(tmp_path, checkpoint):
    folder = tmp_path / "models"
    folder.mkdir()
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved["hyper_parameters"]["data"]["dataset"] = "gone"
    torch.save(saved, folder / "moved.ckpt")
    shutil.copy(checkpoint, folder / "good.ckpt")
    result = esq(
        tmp_path, "run", "similarity", "--checkpoints-dir", str(folder), "--metrics", "mean_distance", "--json"
    )
    assert result.exit_code == 3, result.output
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert "moved.ckpt" in rows["moved"]["error"] and "--dataset" in rows["moved"]["error"], rows["moved"]["error"]
