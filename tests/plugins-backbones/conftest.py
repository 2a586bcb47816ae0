"""esq-backbones tests skip cleanly where the plugin is not installed.

Building a large architecture (ResNet-50, VGG-19, DeepLabV3, ViT-B, DINOv2, SD-VAE, LPIPS) at
random init costs seconds, so each is built once per session (``build``); a test that needs other
options of the same weights gets a ``variant``, and a test that checks only structure or shapes
builds on the meta device (``meta``), which initialises nothing.
"""

import pytest

pytest.importorskip("esq_backbones")

import esq


def create(name, **options):
    return esq.registry("backbones").create(name, **options)


@pytest.fixture(scope="session")
def build():
    """``build(name, **options)``: a backbone at weights="none", seeded, cached for the session.
    Tests read it and must leave it as they found it."""
    import torch

    cache = {}

    def make(name, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = create(name, weights="none", **options)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def meta():
    """``meta(name, **options)``: the backbone built on the meta device: its structure, layers and
    shapes (``feature_dim`` too), without values and without the time random init takes."""
    import torch

    def make(name, **options):
        with torch.device("meta"):
            return create(name, **options)

    return make


@pytest.fixture(scope="session")
def variant(build, meta):
    """``variant(name, **options)``: the backbone built with ``options`` that change no shape
    (``channels_last``, ``train_last_block``, ``layer``...), holding ``build(name)``'s weights."""
    return lambda name, **options: with_weights_of(build(name), meta(name, **options))


@pytest.fixture(scope="session")
def weights_of():
    """``weights_of(source, backbone, share=False)``: see ``with_weights_of``."""
    return with_weights_of


def with_weights_of(source, backbone, share=False):
    """``backbone`` (built on the meta device) on the CPU with every parameter and buffer of
    ``source``, an architecture of the same shapes; a key or shape that differs is an error.
    ``share=True`` uses ``source``'s tensors themselves (nothing copied: for reading only)."""
    backbone.to_empty(device="cpu")
    backbone.load_state_dict(source.state_dict(), assign=share)  # strict: the same keys and shapes
    buffers = dict(backbone.named_buffers())
    for name, buffer in source.named_buffers():  # non-persistent buffers too
        if buffers[name] is not buffer:
            buffers[name].copy_(buffer)
    backbone.preprocess = source.preprocess  # built on the meta device, its constants are empty
    return backbone


@pytest.fixture
def images():
    """``images(n, height, width=None)``: preprocessed-looking random float images, seeded."""
    import torch

    def make(count, height, width=None):
        generator = torch.Generator().manual_seed(count * 1000 + height)
        return torch.randn(count, 3, height, width or height, generator=generator)

    return make
