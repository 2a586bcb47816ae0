"""``esq run similarity`` with core's fake plugin: checkpoints trained here (tiny segmenter,
rounding quantizer) and feature files in every format, scored by mean_distance."""

from __future__ import annotations

import csv
import json
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


def esq(tmp_path: Path, *arguments: str, expect: int = 0):
    result = CliRunner().invoke(make_cli(), [*arguments, "--plugin", FAKE, "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == expect, result.output
    return result


def last_run(tmp_path: Path, pipeline: str) -> Path:
    return sorted((tmp_path / "runs" / pipeline).iterdir())[-1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A folder with a baseline and a rounding checkpoint, as a user would gather them; the training
    runs' folders (best.ckpt, last.ckpt) stay in ``runs/`` beside it."""
    root = tmp_path_factory.mktemp("checkpoints")
    folder = root / "models"
    folder.mkdir()
    for pipeline, extra in (("baseline", []), ("squeeze", ["--quantizer", "rounding"])):
        esq(root, "run", pipeline, *TRAIN, *extra)
        shutil.copy(last_run(root, pipeline) / "checkpoints" / "best.ckpt", folder / f"{pipeline}.ckpt")
    return folder


def test_every_checkpoint_is_scored_and_the_previous_json_is_written(checkpoints, tmp_path):
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "--json"]
    result = esq(tmp_path, "run", "similarity", *options)
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert rows["baseline"]["value"] == 0.0 and rows["squeeze"]["value"] < 0.0
    run = last_run(tmp_path, "similarity")
    written = json.loads((run / "similarity.json").read_text())
    assert written.pop("_esq")["samples"] == {"baseline": 2, "squeeze": 2}
    assert written == {
        "baseline": {"mean_distance": 0.0},
        "squeeze": {"mean_distance": rows["squeeze"]["value"]},
    }
    assert (run / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((run / "results.json").read_text())["summary"]["models"]
    assert summary["squeeze"]["quantizer"] == "rounding" and summary["squeeze"]["samples"] == 2


def test_token_pooling_pairs_the_same_positions(checkpoints, tmp_path):
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "--pooling", "tokens"]
    result = esq(tmp_path, "run", "similarity", *options, "--tokens-per-image", "5", "--split", "trainval", "--json")
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert rows["baseline"]["value"] == 0.0 and rows["baseline"]["samples"] == 5 * 18


def test_each_row_names_the_settings_that_tell_it_from_another_runs(checkpoints, tmp_path):
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "--pooling", "tokens"]
    esq(tmp_path, "run", "similarity", *options, "--tokens-per-image", "3", "--bootstrap", "2")

    with open(last_run(tmp_path, "similarity") / "results.csv", encoding="utf-8") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    squeeze = rows["squeeze"]
    shown = ("quantizer", "backbone", "dataset", "split", "pooling", "tokens_per_image", "bootstrap")
    assert [squeeze[column] for column in shown] == [
        "rounding",
        "tiny_segmenter",
        "synthetic",
        "test",
        "tokens",
        "3",
        "2",
    ]
    assert float(squeeze["bits_per_vector"]) < float(rows["baseline"]["bits_per_vector"])


def write(path: Path, array: np.ndarray) -> Path:
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({"features": array}, path)
    else:
        torch.save({"features": torch.from_numpy(array)}, path)
    return path


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors"])
def test_two_feature_files_with_bootstrap_intervals(tmp_path, suffix):
    generator = np.random.default_rng(0)
    a = generator.normal(size=(60, 5)).astype(np.float32)
    b = a + 0.1 * generator.normal(size=a.shape).astype(np.float32)
    files = [
        "--features-a",
        str(write(tmp_path / f"a{suffix}", a)),
        "--features-b",
        str(write(tmp_path / f"b{suffix}", b)),
    ]
    result = esq(tmp_path, "run", "similarity", *files, "--metrics", "mean_distance", "--bootstrap", "50", "--json")
    (row,) = json.loads(result.stdout)
    expected = -float(np.linalg.norm(a.astype(np.float64) - b, axis=1).mean())
    assert row["value"] == pytest.approx(expected, rel=1e-6)
    assert row["ci_low"] < row["value"] < row["ci_high"]
    table = esq(tmp_path, "run", "similarity", *files, "--metrics", "mean_distance", "--bootstrap", "50").stdout
    assert f"{row['value']:.4g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]" in table


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--features-a", "missing.npy", "--features-b", "missing.npy"], "features_a missing.npy: no such file"),
        (["--features-a", "a.npy"], "features_a and features_b go together"),
        ([], "give one of checkpoints_dir, features_a and features_b, or results"),
        (["--checkpoints-dir", "nowhere"], "checkpoints_dir nowhere: no such folder"),
        (["--checkpoints-dir", "a.txt"], "checkpoints_dir a.txt: a file, not a folder; give a folder of .ckpt"),
        (["--features-a", "a.txt", "--features-b", "a.txt"], "unknown format"),
    ],
)
def test_bad_input_is_one_line(tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("1 2 3")
    result = esq(tmp_path, "run", "similarity", *options, "--metrics", "mean_distance", expect=1)
    assert result.output.startswith("Error: ") and message in result.output and result.output.count("\n") == 1


def test_a_previous_json_is_drawn_and_tabulated_again(tmp_path):
    previous = tmp_path / "old.json"
    previous.write_text(json.dumps({"vq": {"cka": 0.9, "rsa": 0.8}, "fsq": {"cka": 0.95, "rsa": 0.85}}))
    result = esq(tmp_path, "run", "similarity", "--results", str(previous), "--visualize", "plots.png", "--json")
    assert {(row["model"], row["metric"], row["value"]) for row in json.loads(result.stdout)} == {
        ("vq", "cka", 0.9),
        ("vq", "rsa", 0.8),
        ("fsq", "cka", 0.95),
        ("fsq", "rsa", 0.85),
    }
    assert (last_run(tmp_path, "similarity") / "plots.png").is_file()


def test_the_previous_metrics_spelling_takes_several_values(checkpoints, tmp_path):
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "mean_shift", "--json"]
    result = esq(tmp_path, "run", "similarity", *options, expect=1)
    assert "metrics: 'mean_shift' is a distribution metric, not a similarity metric" in result.output


def test_checkpoints_are_found_in_run_folders_below_and_named_after_their_run(checkpoints, tmp_path):
    runs = checkpoints.parent / "runs"
    options = ["--checkpoints-dir", str(runs), "--metrics", "mean_distance", "--json"]
    rows = json.loads(esq(tmp_path, "run", "similarity", *options).stdout)
    trained = {last_run(checkpoints.parent, pipeline).name for pipeline in ("baseline", "squeeze")}
    assert sorted(row["model"] for row in rows) == sorted(trained)  # best.ckpt only, not last.ckpt too
    models = json.loads((last_run(tmp_path, "similarity") / "results.json").read_text())["summary"]["models"]
    assert {Path(facts["checkpoint"]).name for facts in models.values()} == {"best.ckpt"}


def test_checkpoint_files_below_the_folder_take_best_and_skip_hidden_folders(tmp_path):
    from esq.builtin.pipelines.similarity.features import checkpoint_files

    files = ("a/RUN/checkpoints/best.ckpt", "a/RUN/checkpoints/last.ckpt", "b/last.ckpt", "c/x.pth", ".git/y.ckpt")
    for path in (*[f"models/{name}" for name in files], "elsewhere/RUN2/best.ckpt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    models = tmp_path / "models"
    (models / "linked").symlink_to(tmp_path / "elsewhere/RUN2", target_is_directory=True)  # a run linked in
    (models / "c/up").symlink_to(models / "c", target_is_directory=True)  # a loop: searched once
    found = [path.relative_to(models).as_posix() for path in checkpoint_files(models)]
    assert found == ["a/RUN/checkpoints/best.ckpt", "b/last.ckpt", "c/x.pth", "linked/best.ckpt"]


def test_two_runs_of_the_same_name_are_told_apart_by_their_relative_path(tmp_path):
    from esq.builtin.pipelines.similarity.features import model_names

    paths = [
        tmp_path / "vq/squeeze-vq/checkpoints/best.ckpt",
        tmp_path / "fsq/squeeze-vq/best.ckpt",
        tmp_path / "squeeze-fsq/checkpoints/best.ckpt",
        tmp_path / "old/model.pth",
    ]
    names = model_names(paths, tmp_path)
    assert list(names.values()) == ["vq/squeeze-vq", "fsq/squeeze-vq", "squeeze-fsq", "model"]


def test_intervals_and_split_are_kept_so_results_redraws_the_error_bars(checkpoints, tmp_path, monkeypatch):
    from esq.builtin.pipelines.similarity import scoring

    drawn = []
    original = scoring.plot_metrics
    monkeypatch.setattr(
        scoring, "plot_metrics", lambda path, rows, title: drawn.append((rows, title)) or original(path, rows, title)
    )
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "--bootstrap", "5", "--json"]
    rows = json.loads(esq(tmp_path, "run", "similarity", *options).stdout)
    run = last_run(tmp_path, "similarity")
    kept = json.loads((run / "similarity.json").read_text())["_esq"]
    assert (kept["split"], kept["pooling"], kept["bootstrap"]) == ("test", "gap", 5)
    intervals = {(row["model"], row["ci_low"], row["ci_high"]) for row in rows}
    for source in (run / "similarity.json", run / "results.json", run):
        again = json.loads(esq(tmp_path, "run", "similarity", "--results", str(source), "--json").stdout)
        assert {(row["model"], row["ci_low"], row["ci_high"]) for row in again} == intervals
        assert all(row["ci_low"] is not None for row in drawn[-1][0])
        assert "test split" in drawn[-1][1] and "gap pooling" in drawn[-1][1]


def test_the_chart_title_names_the_pooling_and_n(checkpoints, tmp_path, monkeypatch):
    from esq.builtin.pipelines.similarity import scoring

    titles = []
    monkeypatch.setattr(scoring, "plot_metrics", lambda path, rows, title: titles.append(title))
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "--pooling", "tokens"]
    rows = json.loads(esq(tmp_path, "run", "similarity", *options, "--tokens-per-image", "3", "--json").stdout)
    (title,) = titles
    assert "tokens pooling" in title and f"N = {rows[0]['samples']}" in title and "test split" in title


def test_feature_extraction_and_bootstrap_show_progress_naming_the_model(checkpoints, tmp_path, monkeypatch):
    from esq.results import RunContext

    seen = []

    def progress(self, items, description, total=None):
        seen.append((description, total))
        yield from items

    monkeypatch.setattr(RunContext, "progress", progress)
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "--bootstrap", "4"]
    esq(tmp_path, "run", "similarity", *options)
    for model in ("baseline", "squeeze"):
        assert (f"{model} mean_distance: bootstrap", 4) in seen
        assert any(description == f"{model}: features" for description, _ in seen)


def test_a_small_n_is_one_warning_per_metric_class_not_per_model(checkpoints, tmp_path, caplog):
    options = ["--checkpoints-dir", str(checkpoints), "--metrics", "mean_distance", "--bootstrap", "3"]
    esq(tmp_path, "run", "similarity", *options)
    (line,) = [record.getMessage() for record in caplog.records if "small N" in record.getMessage()]
    assert "bootstrap" in line and "baseline, squeeze" in line


def test_small_sample_warnings_say_what_a_small_n_means_for_each_class():
    from esq.builtin.pipelines.similarity.scoring import small_sample_warnings

    shapes = {"vq": (30, 64), "fsq": (30, 64)}
    lines = small_sample_warnings(["cka", "pwcca", "svcca", "rsa", "jaccard_knn"], shapes, {}, 100)
    assert len(lines) == 5  # CKA, CCA (pwcca and svcca together), k-NN, pairwise, bootstrap
    assert "biased upward" in lines[0] and "degenerate" in lines[1] and "(pwcca, svcca)" in lines[1]
    assert [line for line in lines if "jaccard_knn" in line] == [lines[2]] and "by chance" in lines[2]
    assert all("vq, fsq" in line for line in lines)
    assert not small_sample_warnings(["cka"], shapes, {"cka": {"debiased": True}}, 0)
    assert not small_sample_warnings(["cka", "pwcca"], {"vq": (1000, 64)}, {}, 0)


# esq run visualize, on the same two checkpoints (no training of its own)


def visualize(tmp_path: Path, checkpoints: Path, *options: str) -> dict:
    models = ["--vq-checkpoint", str(checkpoints / "squeeze.ckpt")]
    models += ["--baseline-checkpoint", str(checkpoints / "baseline.ckpt")]
    esq(tmp_path, "run", "visualize", *models, *options)
    return json.loads((last_run(tmp_path, "visualize") / "results.json").read_text())["summary"]


def test_visualize_warns_when_n_best_and_n_worst_exceed_the_split_and_shows_each_sample_once(
    checkpoints, tmp_path, caplog
):
    summary = visualize(tmp_path, checkpoints, "--n-best", "5", "--n-worst", "5")
    best, worst = summary["shown"]["best"], summary["shown"]["worst"]
    assert not set(best) & set(worst) and len(best) + len(worst) == summary["samples"]
    (line,) = [record.getMessage() for record in caplog.records if "exceed" in record.getMessage()]
    assert f"exceed the {summary['samples']} samples" in line and f"best {len(best)}" in line


def test_choose_samples_shares_out_the_samples_and_keeps_what_fits():
    from esq.builtin.pipelines.visualize import choose_samples

    ranked = [3, 0, 4, 1, 2]
    assert choose_samples(ranked, 2, 2) == ([3, 0], [2, 1], None)
    for n_best, n_worst in ((5, 5), (10, 1), (0, 9), (9, 0), (1, 10)):
        best, worst, note = choose_samples(ranked, n_best, n_worst)
        assert note and not set(best) & set(worst) and len(best) + len(worst) == len(ranked)
        assert best == ranked[: len(best)] and worst == ranked[::-1][: len(worst)]
        assert len(best) <= n_best and len(worst) <= n_worst


def test_visualize_labels_folder_images_by_file_name(checkpoints, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    generator = np.random.default_rng(0)
    for index in range(10):
        Image.fromarray(generator.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
            folder / f"images/cat_{index}.png"
        )
        Image.fromarray(generator.integers(0, 4, (16, 16), dtype=np.uint8)).save(folder / f"masks/cat_{index}.png")
    summary = visualize(tmp_path, checkpoints, "--dataset", "folder", "--data-path", str(folder), "--n-worst", "0")
    names = {path.name for path in (folder / "images").iterdir()}
    assert summary["shown"]["best"] and all(label.split(" ", 1)[1] in names for label in summary["shown"]["best"])
