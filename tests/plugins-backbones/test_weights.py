"""weights="none" | "default" | PATH: offline lookup, exact loading, clear errors."""

import pytest
import torch
from safetensors.torch import save_file
from torchvision import models

import esq
from esq import CheckpointError, ConfigError


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub folder (TORCH_HOME) for the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def create(name, **options):
    return esq.registry("backbones").create(name, **options)


def test_default_without_the_file_names_it_and_its_folder(hub, meta):
    with pytest.raises(CheckpointError) as error:
        meta("resnet50", weights="default")
    message = str(error.value)
    assert (
        f"needs torchvision's ResNet50_Weights.IMAGENET1K_V2 at {hub}/resnet50-11ad3fa6.pth, which is missing"
        in message
    )
    assert f"put it in {hub}/" in message and "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in message
    assert "esq weights resnet50" in message


def test_default_loads_the_cached_file(hub, build):
    reference = build("resnet50").network.state_dict()  # torchvision's ResNet-50, built under seed 0
    torch.save(reference, hub / "resnet50-11ad3fa6.pth")
    torch.manual_seed(2)  # another random init, which the file must replace entirely
    backbone = create("resnet50", weights="default")
    for key, value in reference.items():
        assert torch.equal(backbone.network.state_dict()[key], value), key


def test_deeplab_default_keeps_the_body_and_reinitialises_a_resized_classifier(hub):
    torch.manual_seed(1)
    pretrained = models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=True)
    torch.save(pretrained.state_dict(), hub / "deeplabv3_resnet50_coco-cd0a2569.pth")
    backbone = create("deeplabv3_resnet50", weights="default", num_classes=3)
    state = pretrained.state_dict()
    assert torch.equal(backbone.network.layer4[2].conv3.weight, state["backbone.layer4.2.conv3.weight"])
    assert torch.equal(backbone.head[0].convs[0][0].weight, state["classifier.0.convs.0.0.weight"])
    assert backbone.head[-1].out_channels == 3
    same = create("deeplabv3_resnet50", weights="default")
    assert torch.equal(same.head[-1].weight, state["classifier.4.weight"])


def test_dinov2_default_is_found_in_the_hugging_face_cache(tmp_path, monkeypatch, hub, build):
    import huggingface_hub.constants

    cache = tmp_path / "hf"
    repo = cache / "models--timm--vit_base_patch14_dinov2.lvd142m"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    reference = build("dinov2_vitb14").network  # timm's model, built under seed 0
    save_file(reference.state_dict(), repo / "snapshots" / "abc123" / "model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    torch.manual_seed(3)
    backbone = create("dinov2_vitb14", weights="default")
    assert torch.equal(backbone.network.blocks[11].mlp.fc2.weight, reference.blocks[11].mlp.fc2.weight)


def test_a_file_of_another_architecture_shows_its_keys(tmp_path, meta):
    with torch.device("meta"):
        keys = list(models.vgg11(weights=None).state_dict())
    path = tmp_path / "vgg.pth"
    torch.save({key: torch.zeros(1) for key in keys}, path)  # VGG-11's keys: their values do not matter
    with pytest.raises(CheckpointError) as error:
        meta("resnet50", weights=str(path))
    message = str(error.value)
    assert f"resnet50: weights file {path} does not fit this architecture (missing keys: bn1.bias" in message
    assert "unexpected keys: classifier.0.bias" in message and "in all)" in message


def test_shape_mismatches_are_listed(tmp_path, build, meta):
    path = tmp_path / "vit_b_32.pth"
    torch.save(build("vit_b_32").network.state_dict(), path)
    with pytest.raises(
        CheckpointError, match=r"shape mismatches: conv_proj.weight \(768, 3, 32, 32\) vs \(768, 3, 16, 16\)"
    ):
        meta("vit_b_16", weights=str(path))


def test_wrapped_and_prefixed_state_dicts_and_safetensors_load(tmp_path, build):
    reference = build("tiny_cnn").network.state_dict()  # the file format, not the architecture, is tested
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in reference.items()}}, wrapped)
    flat = tmp_path / "flat.safetensors"
    save_file(reference, flat)
    for path in (wrapped, flat):
        torch.manual_seed(4)
        backbone = create("tiny_cnn", weights=str(path))
        for key, value in reference.items():
            assert torch.equal(backbone.network.state_dict()[key], value), key


class NotATensor:
    pass


def test_unreadable_missing_and_unsafe_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"weights file .*nothing.pth does not exist"):
        create("tiny_cnn", weights=str(tmp_path / "nothing.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="tiny_cnn: weights file .*: torch cannot read it"):
        create("tiny_cnn", weights=str(corrupt))
    corrupt.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(CheckpointError, match="weights file .*: torch cannot read it"):
        create("tiny_cnn", weights=str(corrupt))
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"weight": NotATensor()}, unsafe)
    with pytest.raises(CheckpointError, match=r"holds a pickled Python object \(GLOBAL \S*NotATensor\).*only tensors"):
        create("tiny_cnn", weights=str(unsafe))
    with pytest.raises(CheckpointError, match="holds no state dict of tensors"):
        torch.save({"weight": [1, 2]}, unsafe)
        create("tiny_cnn", weights=str(unsafe))
    with pytest.raises(ConfigError, match="tiny_cnn has no pretrained weights"):
        create("tiny_cnn", weights="default")
    with pytest.raises(ConfigError, match="weights must be 'none', 'default' or a file path"):
        create("tiny_cnn", weights="")


def test_a_saved_tiny_backbone_loads_back(tmp_path, images):
    torch.manual_seed(5)
    original = create("tiny_cnn")
    path = tmp_path / "tiny.pth"
    torch.save(original.network.state_dict(), path)
    loaded = create("tiny_cnn", weights=str(path))
    x = images(2, 32)
    torch.testing.assert_close(loaded.features(x, "block3")["block3"], original.features(x, "block3")["block3"])
    assert loaded.options["weights"] == str(path)


def test_files_without_num_batches_tracked_load(tmp_path, build):
    reference = build("tiny_cnn").network.state_dict()  # BatchNorm in every block
    state = {k: v for k, v in reference.items() if not k.endswith("num_batches_tracked")}
    assert len(state) < len(reference)
    path = tmp_path / "old.pth"
    torch.save(state, path)
    torch.manual_seed(6)
    backbone = create("tiny_cnn", weights=str(path))
    assert torch.equal(backbone.network.block4[0].weight, state["block4.0.weight"])
    assert torch.equal(backbone.network.block4[1].running_var, state["block4.1.running_var"])


def test_a_deeplab_file_of_its_own_class_count_loads(tmp_path, meta):
    torch.manual_seed(7)
    tuned = models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=5)
    path = tmp_path / "tuned.pth"
    torch.save(tuned.state_dict(), path)
    backbone = create("deeplabv3_resnet50", weights=str(path), num_classes=5)
    assert torch.equal(backbone.head[-1].weight, tuned.classifier[-1].weight)
    with pytest.raises(CheckpointError, match=r"classifier.4.weight \(5, 256, 1, 1\) vs \(21, 256, 1, 1\)"):
        meta("deeplabv3_resnet50", weights=str(path))


def test_sd_vae_files_with_the_old_attention_names_load(tmp_path):
    import diffusers

    from esq_backbones.sd_vae import CONFIG

    torch.manual_seed(8)
    vae = diffusers.AutoencoderKL(**CONFIG)
    old_names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = {}
    for key, value in vae.state_dict().items():
        for new, old in old_names.items():
            key = key.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
        state[key] = value
    assert any(".query." in key for key in state)
    path = tmp_path / "old.safetensors"
    save_file(state, path)
    backbone = create("sd_vae", weights=str(path))
    attention = backbone.network.mid_block.attentions[0]
    assert torch.equal(attention.to_q.weight, vae.encoder.mid_block.attentions[0].to_q.weight)


def test_bad_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="tiny_cnn: head_channels must be an integer .*1, got 0"):
        create("tiny_cnn", head_channels=0)
    with pytest.raises(ConfigError, match="tiny_vit: num_classes must be an integer .*1, got 2.0"):
        create("tiny_vit", num_classes=2.0)
    with pytest.raises(ConfigError, match="tiny_cnn: batch_size must be an integer .*1, got 0"):
        create("tiny_cnn", batch_size=0)
    with pytest.raises(ConfigError, match="tiny_cnn: train_last_block must be true or false, got 'yes'"):
        create("tiny_cnn", train_last_block="yes")
    with pytest.raises(ConfigError, match="dinov2_vitb14: image_size must be a multiple of the patch size 14"):
        create("dinov2_vitb14", image_size=256)
    with pytest.raises(ConfigError, match="dinov2_vitb14: image_size must be an integer .*14, got 7"):
        create("dinov2_vitb14", image_size=7)
