"""The chinese_clip backbone: conformance, the official preprocessing, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import esq
from esq.errors import CheckpointError, ConfigError
from esq.testing import check_backbone
from esq_clip.models import ChineseCLIP

SMALL = {"vision_model": "RN50", "text_model": "RBT3-chinese"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ChineseCLIP(**SMALL)


def test_the_backbone_passes_the_conformance_checks():
    check_backbone(esq.registry("backbones").spec("chinese_clip"), image_size=224, weights="none", **SMALL)


def test_preprocess_equals_the_official_transform_on_pil_images(model):
    from cn_clip.clip import image_transform

    generator = np.random.default_rng(0)
    images = [Image.fromarray(generator.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((60, 80), (300, 200))]
    images.append(images[0].convert("L"))
    expected = torch.stack([image_transform(224)(image) for image in images])
    assert torch.equal(model.preprocess(images), expected)


def test_embeddings_are_unit_length_and_texts_are_tokenised_to_52(model):
    images = model.preprocess(torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8))
    image_features = model.encode_images(images)
    text_features = model.encode_texts(["一只猫", "a red car", "北京" * 60])
    assert image_features.shape == text_features.shape == (3, 1024)
    assert torch.allclose(image_features.norm(dim=1), torch.ones(3)) and torch.allclose(
        text_features.norm(dim=1), torch.ones(3)
    )
    assert model.features(images)["embedding"].shape == (3, 1, 1024)


def test_a_training_checkpoint_with_module_prefixes_loads(tmp_path, model):
    state = {f"module.{key}": value.clone() for key, value in model.network.state_dict().items()}
    torch.save({"epoch": 3, "step": 10, "state_dict": state}, tmp_path / "epoch_latest.pt")
    loaded = ChineseCLIP(**SMALL, weights=str(tmp_path / "epoch_latest.pt"))
    texts = ["一只猫", "狗"]
    assert torch.equal(loaded.encode_texts(texts), model.encode_texts(texts))


def test_a_checkpoint_of_another_architecture_names_its_keys(tmp_path, model):
    torch.save({"state_dict": model.network.state_dict()}, tmp_path / "rn50.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint of this architecture: .* missing keys"):
        ChineseCLIP(vision_model="ViT-B-32", text_model="RBT3-chinese", weights=str(tmp_path / "rn50.pt"))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ChineseCLIP(**SMALL, weights=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="torch cannot read it"):
        ChineseCLIP(**SMALL, weights=str(tmp_path / "junk.pt"))


def test_unknown_configs_list_the_available_ones():
    with pytest.raises(ConfigError, match="vision_model 'ViT-Q' is not a cn-clip config; available: .*RN50"):
        ChineseCLIP(vision_model="ViT-Q", text_model="RBT3-chinese")
    with pytest.raises(ConfigError, match="pass one vision and one text config"):
        ChineseCLIP(vision_model="RN50", text_model="ViT-B-16")
