"""esq-metrics degradations: conformance, the formulas against PIL and SciPy, monotone on
photographs, determinism, dtype and shape, rounding of uint8 noise, bad levels and bad images."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

import esq
from esq import ConfigError, DataError
from esq.testing import check_degradation

NAMES = ["gaussian_blur", "gaussian_noise", "blur_contrast", "aliasing", "jpeg"]
# Levels that leave the image as it is.
CLEAN = {"gaussian_blur": 0, "gaussian_noise": 0, "blur_contrast": 0, "aliasing": 1}
REFERENCE_FINE_ALIASING = [1.1, 1.2, 1.3, 1.5, 1.7, 2, 2.3, 2.7, 3]


def create(name: str, **options):
    return esq.registry("degradations").create(name, **options)


def random_images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)).to(torch.uint8)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Two uint8 (3, 96, 128) crops of the photographs scikit-learn ships (no download)."""
    datasets = pytest.importorskip("sklearn.datasets")
    crops = [datasets.load_sample_image(name)[100:196, 200:328] for name in ("china.jpg", "flower.jpg")]
    return torch.stack([torch.from_numpy(crop.copy()).permute(2, 0, 1) for crop in crops])


def laplacian_energy(images: torch.Tensor) -> float:
    """Mean squared 4-neighbour Laplacian: the high-frequency energy blur takes away."""
    x = images.to(torch.float64)
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64).view(1, 1, 3, 3)
    return float(F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), kernel).pow(2).mean())


def mean_absolute_change(images: torch.Tensor, degraded: torch.Tensor) -> float:
    return float((degraded.to(torch.float64) - images.to(torch.float64)).abs().mean())


def mean_squared_error(images: torch.Tensor, degraded: torch.Tensor) -> float:
    return float((degraded.to(torch.float64) - images.to(torch.float64)).pow(2).mean())


def strictly_increasing(values: list[float]) -> bool:
    return all(later > earlier for earlier, later in itertools.pairwise(values))


@pytest.mark.parametrize("name", NAMES)
def test_each_degradation_passes_the_conformance_checks(name):
    check_degradation(esq.registry("degradations").spec(name))


@pytest.mark.parametrize(
    ("name", "levels"),
    [
        ("gaussian_blur", [1, 2, 3, 4, 6]),
        ("gaussian_noise", [20.4, 30.6, 45.9, 66.3, 96.9]),
        ("jpeg", [75, 82, 85, 90, 93]),
    ],
)
def test_imagenet_c_levels_are_its_severities_and_pass_the_checks(name, levels):
    degradation = create(name, levels="imagenet_c")
    assert list(degradation.levels) == pytest.approx(levels)
    assert degradation.options == {"levels": degradation.levels}
    check_degradation(esq.registry("degradations").spec(name), levels="imagenet_c")


def test_blur_contrast_takes_imagenet_c_blur_and_contrast_pairs():
    options = {"sigmas": [1, 2, 3, 4, 6], "contrast_factors": [0.4, 0.3, 0.2, 0.1, 0.05]}
    degradation = create("blur_contrast", **options)
    assert degradation.levels == (1, 2, 3, 4, 5)
    assert degradation.options == {"levels": (1, 2, 3, 4, 5), **{key: tuple(value) for key, value in options.items()}}
    check_degradation(esq.registry("degradations").spec("blur_contrast"), **options)


@pytest.mark.parametrize(
    ("name", "levels"),
    [
        ("gaussian_blur", (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.3, 1.6, 2, 2.5, 3)),
        ("gaussian_noise", (1, 2, 3, 5, 7, 9, 12, 15, 18, 22, 26, 30)),
        ("blur_contrast", (1, 2, 3, 4, 5, 6)),
        ("aliasing", (2, 4, 8)),
        ("jpeg", (10, 30, 50, 70, 90)),
    ],
)
def test_default_levels_go_from_mild_to_severe(name, levels):
    assert tuple(create(name).levels) == levels


def test_blur_contrast_steps_pair_the_references_sigmas_and_contrast_factors():
    degradation = create("blur_contrast")
    pairs = [degradation.step(level) for level in degradation.levels]
    assert pairs == [(0.1, 0.95), (0.3, 0.9), (0.5, 0.85), (0.8, 0.8), (1.0, 0.75), (1.5, 0.7)]
    assert degradation.step(0) == (0.0, 1.0)
    assert degradation.step(2.5) == pytest.approx((0.4, 0.875))


@pytest.mark.parametrize("name", sorted(CLEAN))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_the_clean_level_returns_the_images_unchanged(name, dtype, photos):
    images = photos if dtype == torch.uint8 else photos.to(dtype) / 255
    assert torch.equal(create(name).apply(images, CLEAN[name], seed=3), images)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 2.5])
def test_blur_is_scipys_gaussian_filter_with_nearest_edges(sigma, photos):
    ndimage = pytest.importorskip("scipy.ndimage")
    images = photos.to(torch.float64) / 255
    expected = ndimage.gaussian_filter(images.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=3.0)
    blurred = create("gaussian_blur").apply(images, sigma, seed=0)
    np.testing.assert_allclose(blurred.numpy(), expected, rtol=0, atol=1e-12)


def test_blur_contrast_reduces_contrast_as_pil_image_enhance_does(photos):
    contrast_only = create("blur_contrast", sigmas=[0], contrast_factors=[0.6])
    ours = contrast_only.apply(photos, 1, seed=0)
    for image, result in zip(photos, ours, strict=True):
        enhanced = ImageEnhance.Contrast(Image.fromarray(image.permute(1, 2, 0).numpy())).enhance(0.6)
        expected = torch.from_numpy(np.array(enhanced)).permute(2, 0, 1)
        # PIL rounds the mean grey to an integer before blending: at most one grey level apart.
        assert (result.int() - expected.int()).abs().max() <= 1


def test_blur_contrast_blurs_as_gaussian_blur_does(photos):
    blur_only = create("blur_contrast", sigmas=[2.0], contrast_factors=[1.0])
    assert torch.equal(blur_only.apply(photos, 1, seed=0), create("gaussian_blur").apply(photos, 2.0, seed=0))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_aliasing_is_pil_nearest_down_then_up_sampling(factor, photos):
    aliased = create("aliasing").apply(photos, factor, seed=0)
    height, width = photos.shape[-2:]
    for image, result in zip(photos, aliased, strict=True):
        picture = Image.fromarray(image.permute(1, 2, 0).numpy())
        small = picture.resize((width // factor, height // factor), Image.Resampling.NEAREST)
        expected = np.array(small.resize((width, height), Image.Resampling.NEAREST))
        assert torch.equal(result, torch.from_numpy(expected).permute(2, 0, 1))


def test_aliasing_does_not_average_a_fine_stripe_pattern_away():
    stripes = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    stripes[..., 1::2] = 255
    aliased = create("aliasing").apply(stripes, 2, seed=0)
    # Keeping every other column turns the stripes into one flat colour; a filter would give grey.
    assert set(aliased.unique().tolist()) <= {0, 255}
    assert aliased.unique().numel() == 1


def test_jpeg_level_is_100_minus_quality(photos):
    compressed = create("jpeg").apply(photos, 30, seed=0)
    buffer = io.BytesIO()
    Image.fromarray(photos[0].permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=70)
    expected = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1)
    assert torch.equal(compressed[0], expected)


@pytest.mark.parametrize(
    ("name", "options", "statistic", "direction"),
    [
        ("gaussian_blur", {}, "laplacian", "falls"),
        ("blur_contrast", {}, "laplacian", "falls"),
        ("gaussian_noise", {}, "change", "rises"),
        ("aliasing", {}, "change", "rises"),
        ("aliasing", {"levels": REFERENCE_FINE_ALIASING}, "change", "rises"),
        ("jpeg", {}, "error", "rises"),
    ],
)
def test_degradation_grows_with_the_level_on_photographs(name, options, statistic, direction, photos):
    degradation = create(name, **options)
    # Float images: blur at σ 0.1 and 0.2 differ by less than a uint8 grey level.
    images = photos.to(torch.float64) / 255 if statistic == "laplacian" else photos
    measure = {
        "laplacian": lambda out: laplacian_energy(out),
        "change": lambda out: mean_absolute_change(images, out),
        "error": lambda out: mean_squared_error(images, out),
    }[statistic]
    values = [measure(degradation.apply(images, level, seed=0)) for level in degradation.levels]
    if direction == "falls":
        # σ 0.1 leaves the image as it is (its kernel's side taps are e^-50), later levels do not.
        assert values[0] <= laplacian_energy(images)
        values = [-value for value in values]
    assert strictly_increasing(values), f"{name}: {statistic} over levels {degradation.levels}: {values}"


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_images(name, photos):
    degradation = create(name)
    level = degradation.levels[-1]
    assert torch.equal(degradation.apply(photos, level, seed=7), create(name).apply(photos.clone(), level, seed=7))


def test_another_seed_gives_other_noise(photos):
    noise = create("gaussian_noise")
    assert not torch.equal(noise.apply(photos, 15, seed=0), noise.apply(photos, 15, seed=1))


def test_each_image_of_a_batch_gets_its_own_noise():
    same = torch.full((2, 3, 16, 16), 128, dtype=torch.uint8)
    noisy = create("gaussian_noise").apply(same, 15, seed=0)
    assert not torch.equal(noisy[0], noisy[1])


def test_noise_applied_in_chunks_equals_noise_applied_in_one_batch(photos):
    noise = create("gaussian_noise")
    whole = noise.apply(photos, 15, seed=4)
    chunks = [noise.apply(photos[:1], 15, seed=4), noise.apply(photos[1:], 15, seed=4, first_index=1)]
    assert torch.equal(torch.cat(chunks), whole)


def test_noise_is_drawn_from_a_generator_per_seed_and_image_index(photos):
    noisy = create("gaussian_noise").apply(photos, 12, seed=5)
    for index, image in enumerate(photos):
        z = np.random.default_rng([5, index]).standard_normal(tuple(image.shape))
        expected = np.clip(np.round(image.numpy().astype(np.float64) + 12 * z), 0, 255).astype(np.uint8)
        assert torch.equal(noisy[index], torch.from_numpy(expected))


def test_uint8_noise_is_rounded_not_truncated():
    grey = torch.full((1, 1, 256, 256), 100, dtype=torch.uint8)
    noisy = create("gaussian_noise").apply(grey, 1, seed=0)
    # Truncating x + noise would lower the mean by about half a grey level.
    assert abs(float(noisy.double().mean()) - 100) < 0.02


def test_float_noise_is_the_uint8_noise_scaled_by_1_over_255(photos):
    noise = create("gaussian_noise")
    as_uint8 = noise.apply(photos, 20, seed=2).double()
    as_float = noise.apply(photos.double() / 255, 20, seed=2) * 255
    inside = (as_float > 0) & (as_float < 255)
    assert inside.float().mean() > 0.9
    assert (as_float[inside] - as_uint8[inside]).abs().max() <= 0.5 + 1e-9
    assert as_float.min() >= 0 and as_float.max() <= 255


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_and_dtype_are_kept_and_the_input_is_left_alone(name, dtype, channels, photos):
    images = photos[:, :channels, :40, :52]
    images = images.clone() if dtype == torch.uint8 else images.to(dtype) / 255
    original = images.clone()
    degradation = create(name)
    out = degradation.apply(images, degradation.levels[-1], seed=0)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(images, original)
    assert not torch.equal(out, images)
    if dtype != torch.uint8:
        assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_batch_gives_an_empty_batch(name):
    empty = torch.zeros(0, 3, 8, 8, dtype=torch.uint8)
    assert create(name).apply(empty, create(name).levels[0], seed=0).shape == (0, 3, 8, 8)


@pytest.mark.parametrize(
    ("name", "level", "message"),
    [
        ("gaussian_blur", -1, "σ ≥ 0"),
        ("gaussian_blur", math.inf, "σ ≥ 0"),
        ("gaussian_blur", "3", "σ ≥ 0"),
        ("gaussian_noise", math.nan, "std ≥ 0"),
        ("gaussian_noise", -0.5, "std ≥ 0"),
        ("blur_contrast", 7, "from 0 to 6"),
        ("blur_contrast", -1, "from 0 to 6"),
        ("aliasing", 0.5, "factor ≥ 1"),
        ("jpeg", 100, "from 0 to 99"),
        ("jpeg", 10.5, "whole number"),
        ("jpeg", True, "whole number"),
    ],
)
def test_a_level_out_of_range_is_a_config_error_naming_the_range(name, level, message):
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ConfigError, match=message) as error:
        create(name).apply(images, level, seed=0)
    assert name in str(error.value) and repr(level) in str(error.value)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("gaussian_blur", {"levels": [3, 1]}, "strictly increasing"),
        ("gaussian_blur", {"levels": [1, 1]}, "strictly increasing"),
        ("gaussian_blur", {"levels": []}, "non-empty"),
        ("gaussian_blur", {"levels": 3}, "list of numbers"),
        ("gaussian_noise", {"levels": "imagenet"}, "no level preset 'imagenet'; use one of 'reference', 'imagenet_c'"),
        ("aliasing", {"levels": [0.5, 2]}, "factor ≥ 1"),
        ("jpeg", {"levels": [10, 20.5]}, "whole number"),
        ("blur_contrast", {"levels": [1, 7]}, "from 0 to 6"),
        ("blur_contrast", {"sigmas": [1, 2], "contrast_factors": [0.9]}, "pair up"),
        ("blur_contrast", {"sigmas": [2, 1], "contrast_factors": [0.9, 0.8]}, "non-decreasing"),
        ("blur_contrast", {"sigmas": [1, 2], "contrast_factors": [0.8, 1.2]}, r"numbers in \[0, 1\]"),
        ("blur_contrast", {"sigmas": [1, 2], "contrast_factors": [0.8, 0.9]}, "non-increasing"),
    ],
)
def test_bad_levels_or_steps_are_a_config_error(name, options, message):
    with pytest.raises(ConfigError, match=message):
        create(name, **options)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((1, 3, 8, 8), dtype=np.uint8), "torch.Tensor"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), r"unsqueeze\(0\)"),
        (torch.zeros(1, 1, 3, 8, 8, dtype=torch.uint8), r"shape \(N, C, H, W\)"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int64), "got torch.int64"),
        (torch.zeros(1, 4, 8, 8, dtype=torch.uint8), "4 channels"),
        (torch.zeros(1, 512, 8, 8), "512 channels"),
        (torch.zeros(1, 3, 0, 8, dtype=torch.uint8), "at least one pixel"),
        (torch.full((1, 3, 8, 8), 2.0), r"\[0, 1\].*\[2, 2\]"),
        (torch.full((1, 3, 8, 8), -0.4), "undo any mean/std normalisation"),
        (torch.full((1, 3, 8, 8), math.nan), "NaN"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_what_is_not_an_image_batch_is_a_data_error(name, images, message):
    with pytest.raises(DataError, match=message):
        create(name).apply(images, create(name).levels[0], seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_a_bad_seed_is_a_config_error(seed):
    with pytest.raises(ConfigError, match="seed must be an integer.* at least 0"):
        create("gaussian_noise").apply(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 5, seed=seed)


@pytest.mark.parametrize("name", NAMES)
def test_options_rebuild_the_same_degradation(name):
    degradation = create(name)
    rebuilt = create(name, **degradation.options)
    assert rebuilt.options == degradation.options and tuple(rebuilt.levels) == tuple(degradation.levels)


@pytest.mark.parametrize("name", NAMES)
def test_each_degradation_says_what_its_level_is(name):
    degradation = create(name)
    assert degradation.level_name not in ("", "level") and isinstance(degradation.level_unit, str)
