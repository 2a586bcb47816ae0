"""Frozen means frozen: eval mode whatever the parent does, no gradients, no autograd history.
Only the head (and the last block, when asked) trains."""

import pytest
import torch
from torch import nn

import esq

SEGMENTATION = [("tiny_cnn", 32), ("tiny_vit", 32), ("deeplabv3_resnet50", 64), ("vit_b_16", 32)]


def running_stats(module):
    return {name: buffer.clone() for name, buffer in module.named_buffers() if "running" in name}


@pytest.mark.parametrize(("name", "size"), SEGMENTATION)
def test_a_training_parent_neither_changes_the_frozen_part_nor_its_gradients(name, size, images, variant):
    backbone = variant(name)  # the session's weights, copied: this test trains the head
    parent = nn.ModuleDict({"model": backbone}).train()
    assert not any(module.training for module in backbone.network.modules())
    assert all(module.training for module in backbone.head.modules())
    before = running_stats(backbone.network)
    logits = backbone(images(2, size))
    assert logits.shape == (2, backbone.num_classes, size, size)
    logits.mean().backward()
    after = running_stats(backbone.network)
    assert all(torch.equal(before[key], after[key]) for key in before), "BatchNorm statistics drifted"
    assert all(p.grad is None and not p.requires_grad for p in backbone.network.parameters())
    assert all(p.grad is not None for p in backbone.head.parameters())
    assert parent.training


def test_embed_and_features_carry_no_history_and_are_ordinary_tensors(build, images):
    backbone = build("tiny_cnn")
    embedded = backbone.embed(images(2, 32))
    assert embedded.grad_fn is None and not embedded.requires_grad
    for batch_size in (2, 1):  # one chunk, and several
        tapped = backbone.features(images(2, 32), "block2", batch_size=batch_size)["block2"]
        assert not tapped.is_inference() and not tapped.requires_grad
        probe = nn.Conv2d(16, 2, 1)
        probe(tapped).sum().backward()  # a model can train on extracted features
        assert probe.weight.grad is not None
        tapped += 1  # and they can be modified in place


def test_extraction_leaves_a_trainable_last_block_untouched(images):
    torch.manual_seed(0)
    backbone = esq.registry("backbones").create("tiny_cnn", train_last_block=True)
    backbone.train()
    norm = backbone.network.block4[1]
    before = running_stats(norm)
    x = images(4, 32)
    whole = backbone.features(x)["block4"]
    assert backbone.feature_dim == 32
    assert all(torch.equal(before[key], value) for key, value in running_stats(norm).items())
    assert norm.training, "the block's own mode is restored after the extraction"
    torch.testing.assert_close(backbone.features(x, batch_size=1)["block4"], whole)


def test_a_half_precision_backbone_extracts_in_its_dtype(images):
    torch.manual_seed(0)
    backbone = esq.registry("backbones").create("tiny_cnn").to(torch.bfloat16)
    assert backbone.features(images(2, 32))["block4"].dtype == torch.bfloat16
    assert backbone(images(2, 32)).dtype == torch.bfloat16


def test_train_last_block_trains_that_block_alone(images, variant):
    backbone = variant("deeplabv3_resnet50", train_last_block=True)
    backbone.train()
    body = backbone.network
    assert body.layer4.training and not body.layer3.training and not body.bn1.training
    backbone(images(2, 64)).mean().backward()
    assert all(p.grad is not None for p in body.layer4.parameters())
    assert all(p.grad is None for p in body.layer3.parameters())
    backbone.eval()
    assert not body.layer4.training


def test_train_last_block_of_a_vit_is_its_last_encoder_layer(images):
    torch.manual_seed(0)
    backbone = esq.registry("backbones").create("tiny_vit", train_last_block=True)
    backbone.train()
    layers = backbone.network.encoder.layers
    backbone(images(2, 32)).mean().backward()
    assert all(p.grad is not None for p in layers[-1].parameters())
    assert all(p.grad is None for p in layers[0].parameters())


def test_the_last_block_is_not_stored_twice(build):
    backbone = build("deeplabv3_resnet50")
    keys = list(backbone.state_dict())
    assert not any(key.startswith("last_block.") for key in keys)
    assert any(key.startswith("network.layer4.") for key in keys)


def test_hooks_are_removed_and_the_forward_stops_at_the_last_tap(build, images):
    backbone = build("resnet50")
    calls = []
    spy = backbone.network.layer4.register_forward_hook(lambda *_: calls.append(1))
    try:
        backbone.features(images(2, 64), ["conv1", "layer1.0"])
    finally:
        spy.remove()
    assert calls == [], "layer4 ran although the deepest tap was layer1.0"
    assert all(not module._forward_hooks for module in backbone.modules())
    with pytest.raises(esq.ConfigError):
        backbone.features(images(1, 64), ["conv1", "nope"])
    assert all(not module._forward_hooks for module in backbone.modules())
