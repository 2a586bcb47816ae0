"""``esq run degradation`` and ``esq cache`` end to end: tiny_cnn (esq-backbones), the metrics and
degradations of esq-metrics, the built-in images, a cache in a temporary folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from esq.cli.main import make_cli

pytest.importorskip("esq_backbones")
pytest.importorskip("esq_metrics")

SMALL = [
    "mode=quick",
    "backbones=tiny_cnn",
    "image_size=64",
    "n_reference=40",
    "n_evaluation=20",
]
BLUR = 'degradations={blur={type="gaussian_blur", levels=[0.5, 1, 2, 4]}}'


def esq(*args: str) -> object:
    return CliRunner().invoke(make_cli(), list(args))


def run_degradation(tmp_path: Path, *settings: str, expect: int = 0) -> tuple[object, Path | None]:
    """``esq run degradation`` on the small setup; the result and the run directory."""
    arguments = ["run", "degradation", "--output-dir", str(tmp_path / "runs")]
    for setting in [*SMALL, f"cache_dir={tmp_path / 'cache'}", *settings]:
        arguments += ["--set", setting]
    result = esq(*arguments)
    assert result.exit_code == expect, result.output
    runs = sorted((tmp_path / "runs" / "degradation").glob("*"))
    return result, (runs[-1] if runs else None)


def configurations(directory: Path) -> list[dict]:
    return json.loads((directory / "results.json").read_text())["summary"]["configurations"]


def test_fid_rises_with_blur_sigma_on_the_builtin_images(tmp_path, monkeypatch):
    from esq import RunContext

    shown = []  # every long loop shows progress: extraction chunk by chunk and set by set, each score

    def progress(self, items, description, total=None):
        items = list(items)
        shown.append((description, len(items) if total is None else total))
        yield from items

    monkeypatch.setattr(RunContext, "progress", progress)
    _, directory = run_degradation(tmp_path, "metrics=fid", BLUR)
    assert shown == [
        ("tiny_cnn reference: extracting", 1),
        ("tiny_cnn: evaluation sets, clean and degraded", 1 + 4),
        ("tiny_cnn block4 raw: metrics", 1 + 4),
    ]
    (record,) = configurations(directory)
    curve = record["degradations"]["blur"]
    assert curve["levels"] == [0.5, 1, 2, 4]
    assert all(later > earlier for earlier, later in zip(curve["scores"], curve["scores"][1:], strict=False))
    assert curve["monotonicity"] == 1.0 and record["mean_monotonicity"] == 1.0
    assert curve["scores"][0] > record["clean_score"] >= 0


def test_outputs_rows_per_configuration_and_degradation_plots_and_ranking(tmp_path):
    degradations = 'degradations={blur={type="gaussian_blur", levels=[1, 3]}, noise={type="gaussian_noise"}}'
    result, directory = run_degradation(tmp_path, "metrics=[fid,kid,cmmd]", degradations, "top_k=2", "ranking_rows=2")
    with open(directory / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2
    labels = {(row["degradation"], row["level_label"]) for row in rows}
    assert labels == {("blur", "blur σ (px)"), ("noise", "noise std (0–255 scale)")}
    assert {(row["metric"], row["degradation"]) for row in rows} == {
        (metric, degradation) for metric in ("fid", "kid", "cmmd") for degradation in ("blur", "noise")
    }
    records = configurations(directory)
    assert [record["rank"] for record in records] == [1, 2, 3]
    means = [record["mean_monotonicity"] for record in records]
    assert means == sorted(means, reverse=True)
    noise_levels = records[0]["degradations"]["noise"]["levels"]
    assert len(records[0]["degradations"]["noise"]["scores"]) == len(noise_levels) > 5
    plots = ["monotonicity_heatmap.png", "monotonicity_top1.png", "monotonicity_top2.png"]
    assert sorted(path.name for path in directory.glob("*.png")) == plots
    assert sorted(json.loads((directory / "results.json").read_text())["summary"]["plots"]) == plots
    assert (directory / "monotonicity_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mean ρ" in result.stdout and "tiny_cnn · block4 · raw" in result.stdout
    # the ranking shows the best two and says it hides the third
    assert result.stdout.count("tiny_cnn · block4 · raw") == 2
    assert "1 more not shown (ranking_rows = 2); all in results.csv" in result.stdout


def test_second_run_reads_the_cache_without_building_the_backbone(tmp_path, monkeypatch):
    _, cold = run_degradation(tmp_path, "metrics=[fid,kid]", BLUR)
    assert "CACHE MISS" in (cold / "run.log").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("the backbone was built although the cache holds its activations")

    from esq_backbones.base import FrozenBackbone

    monkeypatch.setattr(FrozenBackbone, "__init__", refuse)
    _, warm = run_degradation(tmp_path, "metrics=[fid,kid]", BLUR)
    log = (warm / "run.log").read_text()
    assert "CACHE HIT" in log and "CACHE MISS" not in log
    assert configurations(warm) == configurations(cold)
    # other metrics, transforms and distribution models: still no extraction
    _, other = run_degradation(tmp_path, "metrics=[gmm_nll,kde_nll]", "transforms=[raw,raw_pca_4]", BLUR)
    assert "CACHE MISS" not in (other / "run.log").read_text()
    assert {(r["transform"], r["distribution"]) for r in configurations(other)} >= {("raw_pca_4", "gmm_diag")}


def test_cache_build_then_run_reads_only_the_cache(tmp_path):
    cache = tmp_path / "cache"
    settings = [f"--set={setting}" for setting in [*SMALL, BLUR]]
    built = esq("cache", "build", *settings, "--cache-dir", str(cache))
    assert built.exit_code == 0, built.output
    listed = esq("cache", "ls", "--cache-dir", str(cache), "--json")
    entries = json.loads(listed.stdout)
    assert len(entries) == 2 + 4 and {entry["status"] for entry in entries} == {"complete"}
    assert {entry["images"] for entry in entries} == {"reference", "evaluation"} | {
        f"gaussian_blur {level}" for level in (0.5, 1, 2, 4)
    }
    _, directory = run_degradation(tmp_path, "metrics=fid", BLUR)
    assert "CACHE MISS" not in (directory / "run.log").read_text()


def test_float16_cache_gives_nearly_the_float32_scores(tmp_path):
    _, full = run_degradation(tmp_path, "metrics=kid", BLUR)
    _, half = run_degradation(tmp_path, "metrics=kid", BLUR, "cache_dtype=float16")
    assert "CACHE MISS" in (half / "run.log").read_text()  # a separate entry, not the float32 one
    full_scores = configurations(full)[0]["degradations"]["blur"]["scores"]
    half_scores = configurations(half)[0]["degradations"]["blur"]["scores"]
    assert half_scores == pytest.approx(full_scores, rel=1e-2, abs=1e-6) and half_scores != full_scores


def test_layer_configs_transforms_and_distribution_models_form_the_grid(tmp_path):
    _, directory = run_degradation(
        tmp_path,
        'layer_configs={deep=[3], both=["block3", "block4"]}',
        "transforms=[raw,gram_pca_4]",
        "metrics=[fid,gmm_mahalanobis,kde_nll]",
        'distribution_models={gmm_diag={covariance_type="diag", n_components=2}, kde={bandwidth="scott"}}',
        BLUR,
        "top_k=0",
    )
    grid = {(r["layers"], r["transform"], r["distribution"], r["metric"]) for r in configurations(directory)}
    expected = {
        (layers, transform, model, metric)
        for layers in ("deep", "both")
        for transform in ("raw", "gram_pca_4")
        for model, metric in (("-", "fid"), ("gmm_diag", "gmm_mahalanobis"), ("kde", "kde_nll"))
    }
    assert grid == expected
    assert [path.name for path in directory.glob("*.png")] == ["monotonicity_heatmap.png"]  # top_k=0: no top plots


def test_too_wide_features_are_skipped_and_said_so(tmp_path):
    _, directory = run_degradation(tmp_path, "metrics=fid", "transforms=[raw,gram]", "max_feature_dim=100", BLUR)
    status = {record["transform"]: record["status"] for record in configurations(directory)}
    assert status["raw"] == "ok"
    assert status["gram"].startswith("skipped: 528 features exceed max_feature_dim=100")


def test_an_image_folder_is_one_option_away(tmp_path):
    import numpy as np
    from PIL import Image

    from esq.builtin.data.image_sets import synthetic_image

    folder = tmp_path / "photos"
    folder.mkdir()
    generator = np.random.default_rng(0)
    for index in range(30):
        Image.fromarray(synthetic_image(generator, 80)).save(folder / f"{index:03d}.png")
    _, directory = run_degradation(
        tmp_path, f"images={folder}", "n_reference=20", "n_evaluation=10", "metrics=kid", BLUR
    )
    assert configurations(directory)[0]["status"] == "ok"
    assert "folder" in (directory / "run.log").read_text()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('degradations={blur={type="gaussian_noise", levels=[-1, 3]}}', "degradations.blur: gaussian_noise: levels"),
        ('degradations={blur={type="gaussian_blr"}}', "did you mean 'gaussian_blur'"),
        ("transforms=gram_pcaa", "unknown transform 'gram_pcaa'"),
        ("metric_options.kid.subsets=3", "metric_options.kid: 'kid' is not in metrics"),
        ("images=/no/such/folder", "images: '/no/such/folder' is not a folder"),
        ("layer_configs={x=[99]}", "tiny_cnn: layer index 99 is out of range"),
    ],
)
def test_bad_settings_give_one_line(tmp_path, setting, message):
    result, _ = run_degradation(tmp_path, "metrics=fid", setting, expect=1)
    assert message in result.output and "Traceback" not in result.output


def test_empty_and_unreadable_image_folders_name_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result, _ = run_degradation(tmp_path, f"images={empty}", "metrics=fid", expect=1)
    assert f"no image files in {empty}" in result.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not an image")
    result, _ = run_degradation(tmp_path, f"images={broken}", "metrics=fid", expect=1)
    assert "a.png" in result.output and "on_unreadable" in result.output


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("distribution_models={gmm={n_componentz=3}}", "distribution_models.gmm: no installed distribution metric"),
        ("distribution_models={gmm={n_components=3, bandwidth=1}}", "no distribution metric takes all of"),
        ("distribution_models={gmm={}}", "distribution_models.gmm: give its options"),
        ("device=banana", "device must be a torch device"),
        ("backbone_options.tiny_cnn.widht=3", "backbone_options.tiny_cnn"),
        ('layer_configs={x=["block9"]}', "layer_configs.x: tiny_cnn: unknown layer 'block9' (did you mean"),
        ("layer_configs={x=[7]}", "layer_configs.x: tiny_cnn: layer index 7"),
    ],
)
def test_a_mistake_in_any_table_is_refused_before_the_run(tmp_path, setting, message):
    result, directory = run_degradation(tmp_path, "metrics=[fid,gmm_nll]", setting, BLUR, expect=1)
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "unexpected" not in result.output and "Traceback" not in result.output
    assert directory is None


def test_a_backbone_without_a_default_layer_is_refused_before_the_run_and_named(tmp_path):
    pytest.importorskip("esq_clip")
    result, directory = run_degradation(tmp_path, "metrics=fid", "backbones=chinese_clip", BLUR, expect=1)
    assert "backbone 'chinese_clip' has no default layer" in result.stderr and "layer_configs" in result.stderr
    assert "unexpected" not in result.output and directory is None


def test_a_backbone_with_only_the_protocol_is_read_through_it(tmp_path):
    from esq.builtin.pipelines.degradation.extraction import backbone_features, layer_configs

    class Bare:  # layers() and features(images, layers): no default_layer, resolve_layers nor batch_size
        def __init__(self):
            self.calls = []

        def layers(self):
            return ["a", "b"]

        def features(self, images, layers):
            self.calls.append(len(images))
            return {layer: images * (index + 1) for index, layer in enumerate(layers)}

    class Config:
        mode, layer_configs = "quick", {"deep": [-1], "both": ["a", 1]}

    bare = Bare()
    assert layer_configs(Config, bare) == {"deep": ["b"], "both": ["a", "b"]}
    import torch

    out = backbone_features(bare, torch.ones(5, 3, 2, 2), ["a", "b"], batch_size=2)
    assert bare.calls == [2, 2, 1] and out["b"].shape == (5, 3, 2, 2) and float(out["b"].sum()) == 2 * 60


def test_a_cache_chunk_of_nan_fails_the_run_naming_the_chunk(tmp_path):
    import numpy as np

    run_degradation(tmp_path, "metrics=fid", BLUR)
    chunk = sorted((tmp_path / "cache").glob("tiny_cnn/*/*/chunk_00000.npy"))[0]
    array = np.load(chunk)
    array[:] = np.nan
    np.save(chunk, array)
    result, directory = run_degradation(tmp_path, "metrics=fid", BLUR, expect=1)
    assert f"cache chunk {chunk} holds NaN" in result.stderr and result.stderr.count("\n") == 1
    assert json.loads((directory / "results.json").read_text())["status"] == "failed"


def test_a_metric_that_cannot_run_is_a_failed_row_and_the_rest_is_kept(tmp_path):
    _, directory = run_degradation(
        tmp_path, "metrics=[fid,gmm_nll]", "distribution_models={big={n_components=500}}", BLUR, expect=3
    )
    statuses = {record["metric"]: record["status"] for record in configurations(directory)}
    assert statuses == {"fid": "ok", "gmm_nll": "failed"}
    document = json.loads((directory / "results.json").read_text())
    assert document["status"] == "partial"
    (failed,) = [row for row in document["rows"] if row["status"] == "failed"]
    assert failed["metric"] == "gmm_nll" and "n_components" in failed["error"]


def test_a_run_that_scores_nothing_fails_and_says_why(tmp_path):
    result, directory = run_degradation(tmp_path, "metrics=fid", "max_feature_dim=2", BLUR, expect=1)
    assert "no configuration was scored" in result.stderr and "max_feature_dim=2" in result.stderr
    assert json.loads((directory / "results.json").read_text())["status"] == "failed"


def test_an_image_whose_file_name_is_not_utf8_is_read_and_hashed_by_its_bytes(tmp_path):
    import os

    import numpy as np
    from PIL import Image

    from esq.builtin.data.image_sets import synthetic_image

    folder = tmp_path / "photos"
    folder.mkdir()
    generator = np.random.default_rng(0)
    for index in range(6):
        name = os.fsdecode(f"{index:03d}-caf".encode() + b"\xe9.png")
        Image.fromarray(synthetic_image(generator, 40)).save(folder / name)
    result, directory = run_degradation(
        tmp_path, f"images={folder}", "image_size=32", "n_reference=4", "n_evaluation=2", "metrics=fid", BLUR
    )
    assert "unexpected" not in result.output and configurations(directory)[0]["status"] == "ok"


@pytest.mark.parametrize(
    ("backbone", "hint"),
    [("tiny_cnn", 'tiny_cnn.weights = "PATH" to a file of your own'), ("resnet50", 'resnet50.weights = "default"')],
)
def test_the_random_weights_warning_suggests_only_what_the_backbone_takes(backbone, hint):
    from types import SimpleNamespace

    from esq import load_plugins
    from esq.builtin.pipelines.degradation.extraction import pretrained_hint

    context = SimpleNamespace(registry=load_plugins().registry)
    assert pretrained_hint(backbone, context).endswith(hint)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--backbone", "tiny_cnn", "tiny_vit", "--layers", "0", "-1"],
        ["--backbone", "tiny_cnn,tiny_vit", "--layers", "0,-1"],
        ["--backbone", "tiny_cnn", "--backbone", "tiny_vit", "--layers", "0", "--layers", "-1"],
    ],
    ids=["several-after-one-flag", "commas", "repeated"],
)
def test_cache_build_options_take_several_values_as_nargs_plus(tmp_path, monkeypatch, arguments):
    from esq.builtin.pipelines.degradation import extraction

    built = []
    monkeypatch.setattr(extraction, "extract_backbone", lambda config, name, *_: built.append((name, config)))
    result = esq("cache", "build", *arguments, "--mode", "quick", "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    assert [name for name, _ in built] == ["tiny_cnn", "tiny_vit"]
    assert built[0][1].layer_configs == {"0": [0], "-1": [-1]} and built[0][1].mode == "quick"
