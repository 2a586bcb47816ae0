"""esq-backbones tests skip cleanly where the plugin is not installed; backbones are built once
per module, at random init."""

import pytest

pytest.importorskip("esq_backbones")

import esq


@pytest.fixture(scope="module")
def build():
    """``build(name, **options)``: a backbone at weights="none", seeded, cached for the module."""
    import torch

    cache = {}

    def make(name, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = esq.registry("backbones").create(name, weights="none", **options)
        return cache[key]

    return make


@pytest.fixture
def images():
    """``images(n, height, width=None)``: preprocessed-looking random float images, seeded."""
    import torch

    def make(count, height, width=None):
        generator = torch.Generator().manual_seed(count * 1000 + height)
        return torch.randn(count, 3, height, width or height, generator=generator)

    return make
