"""``esq run retrieval`` end to end on a tiny dataset in Chinese-CLIP's layout: official file
names and formats, the official scorer agreeing with esq, checkpoints side by side."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from esq import RunContext
from esq.builtin.data.image_sets import synthetic_image
from esq.cli.main import make_cli

SMALL_MODEL = ["vision_model=RN50", "text_model=RBT3-chinese", "batch_size=8"]
TEXTS = [
    "一只猫",
    "红色的汽车",
    "北京的天空",
    "a dog",
    "海边的日落",
    "绿色的树",
    "蓝色的房子",
    "小狗在跑",
    "山和湖",
    "城市夜景",
]


def write_dataset(root: Path, images: int = 12, split: str = "valid") -> Path:
    """``root/datasets/TOY/`` with ``images`` PNG images and 15 texts naming one or two each."""
    from PIL import Image

    folder = root / "datasets" / "TOY"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    with open(folder / f"{split}_imgs.tsv", "w", encoding="utf-8") as handle:
        for image_id in range(100, 100 + images):
            buffer = io.BytesIO()
            Image.fromarray(synthetic_image(generator, 48)).save(buffer, format="PNG")
            handle.write(f"{image_id}\t{base64.b64encode(buffer.getvalue()).decode()}\n")
    with open(folder / f"{split}_texts.jsonl", "w", encoding="utf-8") as handle:
        for text_id in range(15):
            ids = [100 + text_id % images] + ([100 + (text_id + 3) % images] if text_id % 4 == 0 else [])
            record = {"text_id": text_id, "text": TEXTS[text_id % len(TEXTS)] + str(text_id), "image_ids": ids}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return root


def retrieval(tmp_path: Path, *settings: str, expect: int = 0):
    arguments = ["run", "retrieval", "--output-dir", str(tmp_path / "runs"), "--json"]
    for setting in [f"datapath={tmp_path / 'data'}", "dataset=TOY", "split=valid", *SMALL_MODEL, *settings]:
        arguments += ["--set", setting]
    result = CliRunner().invoke(make_cli(), arguments)
    assert result.exit_code == expect, result.output
    runs = sorted((tmp_path / "runs" / "retrieval").glob("*"))
    return result, (runs[-1] if runs else None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """One small random Chinese-CLIP network (RN50 + RBT3), built once for the module, and its
    state saved as a training checkpoint (keys prefixed ``module.``)."""
    from esq_clip.models import ChineseCLIP

    torch.manual_seed(3)
    network = ChineseCLIP("RN50", "RBT3-chinese").network.eval()
    path = tmp_path_factory.mktemp("checkpoint") / "epoch_latest.pt"
    torch.save(
        {"epoch": 1, "state_dict": {f"module.{key}": value for key, value in network.state_dict().items()}}, path
    )
    return network, path


def official_score(module: str, gold: Path, predictions: Path, out: Path) -> dict:
    subprocess.run(
        [sys.executable, "-m", module, str(gold), str(predictions), str(out)], check=True, capture_output=True
    )
    return json.loads(out.read_text())


def test_a_run_writes_the_official_files_and_the_official_scorer_agrees(tmp_path):
    write_dataset(tmp_path / "data")
    result, run = retrieval(tmp_path)
    folder = run / "random"
    names = {path.name for path in folder.iterdir()}
    assert names == {
        "valid_imgs.img_feat.jsonl",
        "valid_texts.txt_feat.jsonl",
        "valid_predictions.jsonl",
        "valid_tr_predictions.jsonl",
        "valid_texts.tr.jsonl",
        "text_to_image_results.json",
        "image_to_text_results.json",
        "sources.json",
    }
    lines = (folder / "valid_predictions.jsonl").read_text().splitlines()
    assert len(lines) == 15 and all(len(json.loads(line)["image_ids"]) == 10 for line in lines)
    gold = tmp_path / "data" / "datasets" / "TOY" / "valid_texts.jsonl"
    official = official_score(
        "cn_clip.eval.evaluation", gold, folder / "valid_predictions.jsonl", tmp_path / "t2i.json"
    )
    assert (folder / "text_to_image_results.json").read_text() == json.dumps(official)
    official_tr = official_score(
        "cn_clip.eval.evaluation_tr",
        folder / "valid_texts.tr.jsonl",
        folder / "valid_tr_predictions.jsonl",
        tmp_path / "i2t.json",
    )
    assert (folder / "image_to_text_results.json").read_text() == json.dumps(official_tr)
    rows = json.loads(result.stdout)
    assert {(row["model"], row["direction"]) for row in rows} == {
        ("random", "text_to_image"),
        ("random", "image_to_text"),
    }
    text_to_image = next(row for row in rows if row["direction"] == "text_to_image")
    assert text_to_image["r10"] == official["scoreJson"]["r10"]


def test_knn_and_recall_from_given_features_perfect_retrieval(tmp_path):
    """Features where each text equals its first image: Recall@1 text→image is 100."""
    write_dataset(tmp_path / "data")
    features = tmp_path / "features" / "random"
    features.mkdir(parents=True)
    basis = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))[0]
    image_ids = list(range(100, 112))
    with open(features / "valid_imgs.img_feat.jsonl", "w") as handle:
        for row, image_id in enumerate(image_ids):
            handle.write(json.dumps({"image_id": image_id, "feature": basis[row].tolist()}) + "\n")
    with open(features / "valid_texts.txt_feat.jsonl", "w") as handle:
        for text_id in range(15):
            handle.write(json.dumps({"text_id": text_id, "feature": basis[text_id % 12].tolist()}) + "\n")
    _, run = retrieval(tmp_path, "steps=[knn,recall]", f"features_dir={tmp_path / 'features'}")
    scores = json.loads((run / "random" / "text_to_image_results.json").read_text())
    assert scores["success"] is True and scores["scoreJson"]["r1"] == 100.0
    assert not (run / "random" / "valid_imgs.img_feat.jsonl").exists()


def test_two_checkpoints_side_by_side_and_a_foreign_checkpoint_is_refused(tmp_path, checkpoint):
    write_dataset(tmp_path / "data")
    result, _ = retrieval(tmp_path, f"model_paths=[none,{checkpoint[1]}]")
    rows = json.loads(result.stdout)
    assert {row["model"] for row in rows} == {"random", "epoch_latest"} and len(rows) == 4
    torch.save({"state_dict": {"visual.proj": torch.zeros(3)}}, tmp_path / "other.pt")
    result, _ = retrieval(tmp_path, f"model_paths=[{tmp_path / 'other.pt'}]", expect=1)
    assert "not a checkpoint of this architecture" in result.output and "missing keys" in result.output


def test_checkpoints_with_one_file_name_get_their_folders_in_names_and_rows(tmp_path, checkpoint, monkeypatch):
    shown = []

    def progress(self, items, description, total=None):
        shown.append(description)
        return iter(items)

    monkeypatch.setattr(RunContext, "progress", progress)  # extraction shows progress naming the model
    write_dataset(tmp_path / "data")
    copies = [tmp_path / side / "epoch_latest.pt" for side in ("a", "b")]
    for copy in copies:
        copy.parent.mkdir()
        shutil.copy(checkpoint[1], copy)
    result, run = retrieval(tmp_path, f"model_paths=[{copies[0]},{copies[1]}]", "steps=[extract]")
    rows = json.loads(result.stdout)
    assert sorted(row["model"] for row in rows) == ["a-epoch_latest", "b-epoch_latest"]
    assert {path.name for path in run.iterdir() if path.is_dir()} == {"a-epoch_latest", "b-epoch_latest"}
    # extract alone prints what it extracted: counts, dimension, files (relative to the run folder)
    for row in rows:
        assert (row["images"], row["texts"], row["dimension"]) == (12, 15, checkpoint[0].visual.output_dim)
        for column in ("image_features", "text_features"):
            lines = (run / row[column]).read_text().splitlines()
            assert (
                len(lines) == row[column.split("_")[0] + "s"]
                and len(json.loads(lines[0])["feature"]) == row["dimension"]
            )
    for model in ("a-epoch_latest", "b-epoch_latest"):
        assert {f"{model}: image features", f"{model}: text features"} <= set(shown)


@pytest.mark.parametrize("paths", ["[none,none]", "[{0},{0}]"])
def test_the_same_model_twice_is_refused(tmp_path, checkpoint, paths):
    write_dataset(tmp_path / "data")
    result, run = retrieval(tmp_path, f"model_paths={paths.format(checkpoint[1])}", expect=1)
    assert "is given 2 times; give each model once" in result.output and run is None


def test_a_gallery_smaller_than_ten_is_refused(tmp_path):
    write_dataset(tmp_path / "data", images=8)
    result, _ = retrieval(tmp_path, "image_to_text=false", expect=1)
    assert "TOY/valid: 8 images, but text-to-image retrieval predicts the top 10" in result.output


def test_features_equal_the_official_extraction_on_the_same_checkpoint(tmp_path, checkpoint):
    """The official extract_features.py path: base64 image → PIL RGB → image_transform → encode_image,
    tokenize(52) → encode_text, each divided by its norm; here with one network in float32."""
    from cn_clip.clip import tokenize
    from cn_clip.clip.utils import image_transform
    from PIL import Image

    from esq_clip.recall import read_features

    write_dataset(tmp_path / "data")
    network, path = checkpoint
    _, run = retrieval(tmp_path, f"model_paths=[{path}]", "steps=[extract]")
    dataset = tmp_path / "data" / "datasets" / "TOY"
    transform = image_transform(network.visual.input_resolution)
    image_ids, pixels = [], []
    for line in (dataset / "valid_imgs.tsv").read_text().splitlines():
        image_id, encoded = line.split("\t")
        image = Image.open(io.BytesIO(base64.urlsafe_b64decode(encoded))).convert("RGB")
        image_ids.append(int(image_id))
        pixels.append(transform(image))
    records = [json.loads(line) for line in (dataset / "valid_texts.jsonl").read_text(encoding="utf-8").splitlines()]
    with torch.no_grad():
        images = network.encode_image(torch.stack(pixels))
        texts = network.encode_text(tokenize([record["text"] for record in records], context_length=52))
    images, texts = (features / features.norm(dim=-1, keepdim=True) for features in (images, texts))
    esq_image_ids, esq_images = read_features(run / "epoch_latest" / "valid_imgs.img_feat.jsonl", "image_id")
    esq_text_ids, esq_texts = read_features(run / "epoch_latest" / "valid_texts.txt_feat.jsonl", "text_id")
    assert esq_image_ids == image_ids and esq_text_ids == [record["text_id"] for record in records]
    torch.testing.assert_close(torch.as_tensor(esq_images, dtype=torch.float32), images, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.as_tensor(esq_texts, dtype=torch.float32), texts, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "settings, words",
    [
        pytest.param(["retriever=exakt"], "unknown retriever 'exakt'", id="unknown retriever"),
        pytest.param(["retriever_options.beam=3"], "retriever 'exact' has no option 'beam'", id="unknown option"),
        pytest.param(["retriever_options.screen=float16"], "screen must be one of", id="option value refused"),
        pytest.param(["quantizer=vqq"], "unknown quantizer 'vqq'", id="unknown quantizer"),
        pytest.param(["vision_model=ViT-Q"], "vision_model 'ViT-Q' is not a cn-clip config", id="unknown model config"),
        pytest.param(["batch_size=0"], "batch_size must be an integer", id="batch size"),
        pytest.param(["split=test"], "test_imgs.tsv: no such file", id="missing split files"),
        pytest.param(["dataset=MUGE"], "no such dataset folder", id="missing dataset"),
        pytest.param(["model_paths=[missing.pt]"], "model_paths: no checkpoint at missing.pt", id="missing checkpoint"),
        pytest.param(
            ["steps=[knn,recall]"],
            "TOY/valid_imgs.img_feat.jsonl: no such file (Chinese-CLIP's extract_features.py writes",
            id="no features where cn-clip writes them",
        ),
        pytest.param(
            ["steps=[knn,recall]", "model_paths=[none,x.pt]"],
            "features_dir: 2 models, but without it the files are read from",
            id="models without features_dir",
        ),
        pytest.param(
            ["steps=[recall]", "features_dir=data"],
            "data/random/valid_predictions.jsonl: no such file: the knn step is missing",
            id="recall without predictions",
        ),
        pytest.param(
            ["steps=[knn,recall]", "features_dir=data"], "features_dir: no data/random/", id="missing features"
        ),
        pytest.param(["steps=[knn]", "features_dir=nowhere"], "features_dir nowhere: no such folder", id="no folder"),
        pytest.param(
            ["steps=[knn]", "features_dir=data/datasets/TOY/valid_texts.jsonl"],
            "valid_texts.jsonl: a file, not a folder; give the run folder of an earlier step",
            id="a file for a folder",
        ),
        pytest.param(["text_to_image=false", "image_to_text=false"], "nothing to search", id="no direction"),
    ],
)
def test_a_bad_config_fails_before_any_run_directory_exists(tmp_path, monkeypatch, settings, words):
    monkeypatch.chdir(tmp_path)  # relative paths in the settings are the test's own
    write_dataset(tmp_path / "data")
    result, run = retrieval(tmp_path, *settings, expect=1)
    assert words in result.output
    assert run is None and not (tmp_path / "runs").exists()


def test_model_names_are_plain_folder_names_beside_the_run_files():
    from esq import run_file_name
    from esq_clip.pipeline import model_names

    names = model_names(["x/results.json.pt", "y/run.log.pt", "w e/we|ird@.pt", "z/config.toml.pt", "none"])
    assert len(set(names.values())) == 5
    for name in names.values():
        assert run_file_name("model", name) == name


def write_perfect_features(folder: Path, first_image: int = 100) -> Path:
    """The features of 12 images and 15 texts in the official files, each text equal to its first
    gold image (as ``write_dataset`` names them): Recall@1 text→image is 100."""
    folder.mkdir(parents=True, exist_ok=True)
    basis = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))[0]
    with open(folder / "valid_imgs.img_feat.jsonl", "w") as handle:
        for row in range(12):
            handle.write(json.dumps({"image_id": first_image + row, "feature": basis[row].tolist()}) + "\n")
    with open(folder / "valid_texts.txt_feat.jsonl", "w") as handle:
        for text_id in range(15):
            handle.write(json.dumps({"text_id": text_id, "feature": basis[text_id % 12].tolist()}) + "\n")
    return folder


def test_steps_run_as_separate_commands_find_their_inputs_through_what_earlier_steps_recorded(tmp_path):
    """extract → knn --features-dir EXT → recall --features-dir KNN (→ recall --features-dir RECALL):
    each finds the features and predictions where the earlier runs left them, writing only its own run."""
    write_dataset(tmp_path / "data")
    extracted = tmp_path / "extracted"  # what an extract run leaves: <run>/<model>/ features
    write_perfect_features(extracted / "random")
    result, knn = retrieval(tmp_path, "steps=[knn]", f"features_dir={extracted}")
    rows = json.loads(result.stdout)
    assert {(row["direction"], row["predictions"]) for row in rows} == {
        ("text_to_image", "random/valid_predictions.jsonl"),
        ("image_to_text", "random/valid_tr_predictions.jsonl"),
    }
    assert not (knn / "random" / "valid_imgs.img_feat.jsonl").exists()
    result, recall = retrieval(tmp_path, "steps=[recall]", f"features_dir={knn}")
    rows = {row["direction"]: row for row in json.loads(result.stdout)}
    assert rows["text_to_image"]["r1"] == 100.0 and rows["text_to_image"]["bits_per_vector"] == 32 * 16
    assert json.loads((recall / "random" / "text_to_image_results.json").read_text())["scoreJson"]["r1"] == 100.0
    result, _ = retrieval(tmp_path, "steps=[recall]", f"features_dir={recall}")  # a recall run leads to its predictions
    assert {row["direction"]: row["r10"] for row in json.loads(result.stdout)} == {
        direction: row["r10"] for direction, row in rows.items()
    }
    _, again = retrieval(tmp_path, "steps=[knn]", f"features_dir={knn}")  # a knn run leads to its features
    assert (again / "random" / "valid_predictions.jsonl").read_text() == (
        knn / "random" / "valid_predictions.jsonl"
    ).read_text()
    assert json.loads((again / "random" / "sources.json").read_text())["features"] == str(
        (extracted / "random").resolve()
    )
    result, _ = retrieval(tmp_path, "steps=[knn]", f"features_dir={extracted / 'random'}", expect=1)
    assert f"{extracted / 'random'} is a model's folder: give --features-dir the run folder above it" in result.output
    result, _ = retrieval(tmp_path, "steps=[recall]", f"features_dir={extracted}", expect=1)
    assert f"{extracted / 'random'}: features but no valid_predictions.jsonl: the knn step is missing" in result.output


def test_without_features_dir_the_files_are_read_where_chinese_clips_own_scripts_write_them(tmp_path):
    """``<datapath>/datasets/<name>/{split}_imgs.img_feat.jsonl`` (extract_features.py) for
    --skip-extraction and --step knn; ``{split}_predictions.jsonl`` there for --step recall."""
    dataset = write_dataset(tmp_path / "data") / "datasets" / "TOY"
    write_perfect_features(dataset)
    result, run = retrieval(tmp_path, "skip_extraction=true")
    assert {row["direction"]: row["r1"] for row in json.loads(result.stdout)}["text_to_image"] == 100.0
    assert json.loads((run / "random" / "sources.json").read_text())["features"] == str(dataset.resolve())
    for name in ("valid_predictions.jsonl", "valid_tr_predictions.jsonl"):
        shutil.copy(run / "random" / name, dataset / name)
    result, _ = retrieval(tmp_path, "steps=[recall]")
    assert {row["direction"]: row["r1"] for row in json.loads(result.stdout)}["text_to_image"] == 100.0


def test_features_or_predictions_of_another_dataset_are_refused_naming_the_file_and_the_id(tmp_path):
    write_dataset(tmp_path / "data")
    other = write_perfect_features(tmp_path / "other" / "random", first_image=50)
    result, _ = retrieval(tmp_path, "steps=[knn,recall]", f"features_dir={tmp_path / 'other'}", expect=1)
    assert f"{other / 'valid_imgs.img_feat.jsonl'}: no feature for image 100 and 11 more of TOY/valid" in result.output
    knn = tmp_path / "knn" / "random"
    knn.mkdir(parents=True)
    (knn / "valid_predictions.jsonl").write_text(
        "".join(json.dumps({"text_id": t, "image_ids": list(range(50, 60))}) + "\n" for t in range(15))
    )
    result, _ = retrieval(
        tmp_path, "steps=[recall]", "image_to_text=false", f"features_dir={tmp_path / 'knn'}", expect=1
    )
    assert "unexpected" not in result.output
    assert f"{knn / 'valid_predictions.jsonl'}, line 1: image 50 is not in TOY/valid" in result.output
