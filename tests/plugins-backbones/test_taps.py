"""Taps by name, index, alias and list; the values equal the peer libraries' own forward passes."""

import pytest
import torch

from esq import ConfigError, DataError, UnknownNameError


def test_index_name_and_alias_give_the_same_map(build, images):
    backbone = build("resnet50")
    x = images(2, 64)
    by_index = backbone.features(x, backbone.layers().index("layer4.2"))
    assert list(by_index) == ["layer4.2"]
    by_alias = backbone.features(x, ["layer4"])
    torch.testing.assert_close(by_index["layer4.2"], by_alias["layer4"])
    several = backbone.features(x, [8, "layer1", -1])
    assert list(several) == ["layer2.1", "layer1", "avgpool"]
    assert several["avgpool"].shape == (2, 2048, 1, 1)


def test_unknown_layers_list_the_valid_ones(build):
    backbone = build("resnet50")
    with pytest.raises(UnknownNameError) as error:
        backbone.resolve_layers("layer5")
    message = str(error.value)
    assert "resnet50: unknown layer 'layer5' (did you mean" in message
    assert "valid layers: conv1, bn1, relu, maxpool, layer1.0" in message and "layer4" in message
    with pytest.raises(ConfigError, match=r"layer index 21 is out of range; it has 21 layers \(0–20\)"):
        backbone.resolve_layers(21)
    with pytest.raises(ConfigError, match="no layers requested"):
        backbone.resolve_layers([])


def test_an_unknown_default_layer_is_refused_when_built(meta):
    with pytest.raises(ConfigError, match="vgg19: unknown layer 'features.99'"):
        meta("vgg19", layer="features.99")


def test_resnet_taps_equal_torchvision_forward(build, images):
    backbone = build("resnet50")
    network, x = backbone.network, images(2, 64)
    with torch.inference_mode():
        stem = network.maxpool(network.relu(network.bn1(network.conv1(x))))
        expected = network.layer4(network.layer3(network.layer2(network.layer1(stem))))
        logits = network.fc(torch.flatten(network.avgpool(expected), 1))
    torch.testing.assert_close(backbone.features(x, "layer4")["layer4"], expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(network(x), logits, rtol=1e-4, atol=1e-4)


def test_a_tap_followed_by_an_inplace_relu_keeps_its_own_value(build, images):
    backbone = build("vgg19")
    x = images(2, 32)
    alone = backbone.features(x, "features.0")["features.0"]
    together = backbone.features(x, ["features.0", "features.1"])
    assert (alone < 0).any(), "a convolution's output has negative values"
    torch.testing.assert_close(together["features.0"], alone)
    torch.testing.assert_close(together["features.1"], alone.clamp_min(0))


def test_vit_tokens_equal_torchvision_encoder_at_the_trained_size(build, images):
    backbone = build("vit_b_16")
    network, x = backbone.network, images(1, 224)
    with torch.inference_mode():
        tokens = network._process_input(x)
        tokens = torch.cat([network.class_token.expand(1, -1, -1), tokens], dim=1)
        expected = network.encoder(tokens)[:, 1:]
    tapped = backbone.features(x, "encoder.ln")["encoder.ln"]
    assert tapped.shape == (1, 196, 768)
    torch.testing.assert_close(tapped, expected, rtol=1e-4, atol=1e-4)
    grid = backbone.embed(x)
    assert grid.shape == (1, 768, 14, 14)
    torch.testing.assert_close(grid.flatten(2).transpose(1, 2), expected, rtol=1e-4, atol=1e-4)


def test_vit_takes_other_multiples_of_the_patch_and_refuses_the_rest(build, images):
    backbone = build("vit_b_16")
    assert backbone.features(images(1, 48, 80), "encoder.ln")["encoder.ln"].shape == (1, 15, 768)
    assert backbone.features(images(1, 48, 80), "conv_proj")["conv_proj"].shape == (1, 768, 3, 5)
    with pytest.raises(DataError, match=r"vit_b_16: image sides must be multiples of 16 \(the patch size\), got 50×80"):
        backbone.features(images(1, 50, 80))


def test_dinov2_tokens_equal_timm_forward_features(build, images):
    backbone = build("dinov2_vitb14")
    x = images(1, 42)
    with torch.inference_mode():
        expected = backbone.network.forward_features(x)[:, 1:]
    torch.testing.assert_close(backbone.features(x)["norm"], expected)
    assert backbone.features(x, "patch_embed")["patch_embed"].shape == (1, 768, 3, 3)
    with pytest.raises(DataError, match="multiples of 14"):
        backbone.features(images(1, 32))


def test_sd_vae_taps_follow_the_reference_indices(build, images):
    backbone = build("sd_vae")
    x = images(1, 64)
    assert backbone.layers()[9] == "down_blocks.2.downsamplers.0"
    assert backbone.features(x, 9)["down_blocks.2.downsamplers.0"].shape == (1, 512, 8, 8)
    with torch.inference_mode():
        expected = backbone.network(x)
    torch.testing.assert_close(backbone.features(x, "conv_out")["conv_out"], expected)


def test_batches_and_memory_layout_do_not_change_features(build, variant, images):
    x = images(5, 32)
    backbone = build("vgg19")
    whole = backbone.features(x, "features.20")["features.20"]
    torch.testing.assert_close(backbone.features(x, "features.20", batch_size=2)["features.20"], whole)
    contiguous = variant("vgg19", channels_last=False)
    assert backbone.channels_last and not contiguous.channels_last
    assert contiguous.network.features[0].weight.is_contiguous()
    torch.testing.assert_close(contiguous.features(x, "features.20")["features.20"], whole, rtol=1e-4, atol=1e-4)
    assert whole.is_contiguous()


def test_feature_dim_is_the_default_layers_width(build, meta):
    assert build("resnet50").feature_dim == 2048
    assert meta("resnet50").feature_dim == 2048  # the meta device gives the same shapes
    assert meta("resnet50", layer="layer2").feature_dim == 512
    assert meta("vgg19", layer="features.2").feature_dim == 64
    assert build("vit_b_32").feature_dim == 768
    assert build("tiny_cnn").feature_dim == 32
