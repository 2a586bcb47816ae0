"""Every registered backbone passes esq.testing.check_backbone, and its plugin lists it.

The tiny backbones take the check as any plugin's component does. A large architecture is
built at random init once per session (the ``build`` fixture): the check's own builds of it
construct the architecture its options describe on the meta device and take that one build's
weights (shared, not copied), so the rebuild from ``options`` must give the same architecture
(every key and shape loads strictly) and the same features. That a seed alone reproduces the
random init is checked on the tiny backbones, whose construction runs the same code.
"""

import dataclasses

import pytest

import esq
from esq.testing import check_backbone
from esq_backbones.plugin import BACKBONES

TINY = ["tiny_cnn", "tiny_vit"]
LARGE = [row[0] for row in BACKBONES if row[0] not in TINY]

# the smallest image each architecture takes
IMAGE_SIZES = {"resnet50": 64, "deeplabv3_resnet50": 64, "vit_b_32": 64, "dinov2_vitb14": 28, "sd_vae": 16}


@pytest.mark.parametrize("name", TINY)
def test_tiny_backbone_conforms(name):
    check_backbone(esq.registry("backbones").spec(name), image_size=IMAGE_SIZES.get(name, 32), weights="none")


@pytest.mark.parametrize("name", LARGE)
def test_large_backbone_conforms(name, build, meta, weights_of):
    spec = esq.registry("backbones").spec(name)
    source = build(name)

    def factory(**options):
        return weights_of(source, meta(name, **options), share=True)

    check_backbone(dataclasses.replace(spec, factory=factory), image_size=IMAGE_SIZES.get(name, 32), weights="none")


def test_segmentation_backbones_say_so():
    tasks = {spec.name: spec.task for spec in esq.registry("backbones").specs()}
    assert {name for name, task in tasks.items() if task == "segmentation"} == {
        "deeplabv3_resnet50",
        "vit_b_16",
        "vit_b_32",
        "tiny_cnn",
        "tiny_vit",
    }
