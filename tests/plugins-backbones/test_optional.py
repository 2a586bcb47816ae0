"""The optional backbones: LPIPS-VGG agrees with the lpips package's distance; without their
extra, both say how to install it."""

import sys

import pytest
import torch
from torchvision import models

import esq
from esq import ConfigError


def test_lpips_features_give_the_lpips_distance(tmp_path, images):
    torch.manual_seed(0)
    vgg = tmp_path / "vgg16.pth"
    torch.save(models.vgg16(weights=None).state_dict(), vgg)
    # a file path gives VGG-16 in torchvision's layout; LPIPS's learned weights come from the package
    backbone = esq.registry("backbones").create("lpips_vgg", weights=str(vgg))
    first, second = images(2, 64).tanh(), images(3, 64)[:2].tanh()
    with torch.inference_mode():
        expected = backbone.network(first, second).flatten()
    layers = backbone.layers()
    ours, theirs = backbone.features(first, layers), backbone.features(second, layers)
    distance = sum(((ours[name] - theirs[name]) ** 2).sum(dim=1).mean(dim=(1, 2)) for name in layers)
    torch.testing.assert_close(distance, expected, rtol=1e-4, atol=1e-6)
    assert (expected > 0).all()


@pytest.mark.parametrize(
    ("name", "module", "extra"), [("lpips_vgg", "lpips", "lpips"), ("sd_vae", "diffusers", "sd-vae")]
)
def test_a_missing_extra_names_the_install(name, module, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(
        ConfigError, match=rf"{name} needs the optional package '{module}'.*pip install 'esq-backbones\[{extra}\]'"
    ):
        esq.registry("backbones").create(name)
