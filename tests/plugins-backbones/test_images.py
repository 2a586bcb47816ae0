"""preprocess and input checks: uint8/float, PIL, grayscale converted, RGBA refused, resize/crop."""

import pytest
import torch
from PIL import Image

from esq import DataError
from esq_backbones.images import ImageTransform

MEAN, STD = (0.5, 0.25, 0.0), (0.5, 0.5, 1.0)


def test_uint8_and_float_images_normalise_alike():
    transform = ImageTransform("t", MEAN, STD)
    pixels = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = (pixels.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(transform(pixels), expected)
    torch.testing.assert_close(transform(pixels.float() / 255), expected)
    torch.testing.assert_close(transform(pixels[0]), expected[:1])


def test_pil_images_grayscale_and_lists():
    transform = ImageTransform("t", MEAN, STD)
    rgb = Image.new("RGB", (5, 4), (255, 0, 51))
    batch = transform([rgb, Image.new("L", (5, 4), 255)])
    assert batch.shape == (2, 3, 4, 5)
    torch.testing.assert_close(batch[0, :, 0, 0], torch.tensor([1.0, -0.5, 0.2]))
    torch.testing.assert_close(batch[1, :, 0, 0], torch.tensor([1.0, 1.5, 1.0]))


def test_alpha_channels_are_refused_clearly():
    transform = ImageTransform("resnet50")
    with pytest.raises(
        DataError, match=r"resnet50: image has an alpha channel \(mode RGBA\); convert it with image.convert\('RGB'\)"
    ):
        transform(Image.new("RGBA", (4, 4)))
    with pytest.raises(DataError, match=r"resnet50: images have 4 channels \(RGBA\).*images\[:, :3\]"):
        transform(torch.zeros(1, 4, 4, 4, dtype=torch.uint8))
    with pytest.raises(DataError, match="images have 2 channels; expected 3"):
        transform(torch.zeros(1, 2, 4, 4))
    with pytest.raises(DataError, match="must be uint8 .* or float"):
        transform(torch.zeros(1, 3, 4, 4, dtype=torch.int64))
    with pytest.raises(DataError, match="empty list"):
        transform([])
    with pytest.raises(DataError, match=r"the images have different sizes \(4×4, 4×5\); resize them"):
        transform([torch.zeros(3, 4, 4), torch.zeros(3, 4, 5)])


def test_resnet50_preprocess_resizes_and_crops_as_its_weights_expect(build):
    preprocess = build("resnet50").preprocess
    assert (preprocess.resize, preprocess.crop) == (232, 224)
    assert preprocess(torch.zeros(3, 300, 400, dtype=torch.uint8)).shape == (1, 3, 224, 224)
    with pytest.raises(DataError, match="smaller than the 224 px crop"):
        ImageTransform("x", crop=224)(torch.zeros(1, 3, 100, 100))


def test_features_convert_grayscale_and_refuse_raw_or_misshapen_input(build, images):
    backbone = build("tiny_cnn")
    gray = images(2, 32)[:, :1]
    torch.testing.assert_close(
        backbone.features(gray)["block4"], backbone.features(gray.expand(-1, 3, -1, -1))["block4"]
    )
    with pytest.raises(
        DataError, match=r"tiny_cnn: expected float images, got torch.uint8; pass them through backbone.preprocess"
    ):
        backbone.features(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"tiny_cnn: images have 4 channels \(RGBA\)"):
        backbone.features(torch.zeros(1, 4, 32, 32))
    with pytest.raises(DataError, match=r"expected an image batch of shape \(N, C, H, W\), got \(3, 32, 32\)"):
        backbone.features(torch.zeros(3, 32, 32))
    with pytest.raises(DataError, match="the image batch is empty"):
        backbone.features(torch.zeros(0, 3, 32, 32))


@pytest.mark.parametrize(
    ("name", "height", "width"), [("vgg19", 256, 259), ("resnet50", 427, 640), ("resnet50", 300, 301)]
)
def test_preprocess_equals_the_weights_own_transforms(build, name, height, width):
    from torchvision import models

    preset = {"vgg19": models.VGG19_Weights.DEFAULT, "resnet50": models.ResNet50_Weights.DEFAULT}[name].transforms()
    preprocess = build(name).preprocess
    pixels = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(preprocess(pixels), preset(pixels).unsqueeze(0))
    photo = Image.fromarray(pixels.permute(1, 2, 0).numpy())
    torch.testing.assert_close(preprocess(photo), preset(photo).unsqueeze(0))
    floats = pixels.float() / 255
    torch.testing.assert_close(preprocess(floats), preset(floats).unsqueeze(0))


def test_dinov2_preprocess_is_bicubic_at_518(build):
    preprocess = build("dinov2_vitb14").preprocess
    assert (preprocess.resize, preprocess.crop, preprocess.interpolation.value) == (518, 518, "bicubic")


def test_deep_pil_images_are_refused_and_tensors_stay_on_their_device():
    transform = ImageTransform("t")
    with pytest.raises(DataError, match=r"16-bit or float pixels \(mode I;16\); scale it to 8-bit RGB"):
        transform(Image.new("I;16", (4, 4)))
    assert transform(torch.rand(1, 3, 4, 4, device="meta")).device.type == "meta"
