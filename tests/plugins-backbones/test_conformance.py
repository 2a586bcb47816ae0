"""Every registered backbone passes esq.testing.check_backbone, and its plugin lists it."""

import pytest

import esq
from esq.testing import check_backbone
from esq_backbones.plugin import BACKBONES

# the smallest image each architecture takes
IMAGE_SIZES = {"resnet50": 64, "deeplabv3_resnet50": 64, "vit_b_32": 64, "dinov2_vitb14": 28, "sd_vae": 16}


@pytest.mark.parametrize("name", [row[0] for row in BACKBONES])
def test_backbone_conforms(name):
    check_backbone(esq.registry("backbones").spec(name), image_size=IMAGE_SIZES.get(name, 32), weights="none")


def test_segmentation_backbones_say_so():
    tasks = {spec.name: spec.task for spec in esq.registry("backbones").specs()}
    assert {name for name, task in tasks.items() if task == "segmentation"} == {
        "deeplabv3_resnet50",
        "vit_b_16",
        "vit_b_32",
        "tiny_cnn",
        "tiny_vit",
    }
