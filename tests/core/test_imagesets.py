"""Image sources: bundled photographs, generated images and folders; order, offsets, fingerprints."""

import logging
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

import esq.builtin.data.image_sets  # noqa: E402
from esq.builtin.data.image_sets import IMAGE_EXTENSIONS, open_images, synthetic_image  # noqa: E402
from esq.errors import ConfigError, DataError  # noqa: E402

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def solid(path, colour, size=(12, 10), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def pixels(images):
    """``(n, 3, h, w)`` → ``(n, h, w, 3)`` NumPy, for comparing colours."""
    return images.permute(0, 2, 3, 1).numpy()


def test_module_imports_without_torch_pil_skimage_or_sklearn():
    probe = (
        "import sys, esq.builtin.data.image_sets; "
        "print(sorted(m for m in ('torch', 'PIL', 'skimage', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- generated sources --------------------------------------------------------------------


@pytest.mark.parametrize("source", ["builtin", "synthetic"])
def test_generated_sets_are_uint8_rgb_of_the_requested_size(source):
    images = open_images(source, count=5, size=24)
    batch = images.load()
    assert (images.source, len(images), images.size) == (source, 5, 24)
    assert batch.shape == (5, 3, 24, 24)
    assert batch.dtype == torch.uint8
    assert len(images.fingerprint) == 64
    int(images.fingerprint, 16)


def test_load_takes_a_slice_of_the_set():
    images = open_images("synthetic", count=5, size=16)
    everything = images.load()
    assert torch.equal(images.load(1, 3), everything[1:3])
    assert torch.equal(images.load(3), everything[3:])
    assert torch.equal(images.load(-2), everything[-2:])
    assert torch.equal(images.load(4, 99), everything[4:])
    assert images.load(3, 3).shape == (0, 3, 16, 16)


@pytest.mark.parametrize("source", ["builtin", "synthetic"])
def test_the_same_seed_gives_the_same_images_and_fingerprint(source):
    first, again = open_images(source, 6, 24, seed=3), open_images(source, 6, 24, seed=3)
    assert first == again
    assert torch.equal(first.load(), again.load())


@pytest.mark.parametrize("source", ["builtin", "synthetic"])
def test_another_seed_gives_other_images_and_fingerprint(source):
    first, other = open_images(source, 6, 24, seed=3), open_images(source, 6, 24, seed=4)
    assert first.fingerprint != other.fingerprint
    assert all(not torch.equal(a, b) for a, b in zip(first.load(), other.load(), strict=True))


def test_the_fingerprint_covers_size_and_count():
    base = open_images("synthetic", 4, 16)
    assert base.fingerprint != open_images("synthetic", 4, 24).fingerprint
    assert base.fingerprint != open_images("synthetic", 5, 16).fingerprint


@pytest.mark.parametrize("source", ["builtin", "synthetic"])
def test_an_offset_continues_the_pool_without_overlap(source):
    whole = open_images(source, count=10, size=24, seed=1)
    reference = open_images(source, count=5, size=24, seed=1)
    evaluation = open_images(source, count=5, size=24, seed=1, offset=5)
    assert torch.equal(whole.load(5, 6)[0], evaluation.load(0, 1)[0])
    assert torch.equal(whole.load(5), evaluation.load())
    assert torch.equal(whole.load(0, 5), reference.load())
    assert evaluation.fingerprint != reference.fingerprint
    assert "from pool image 5" in evaluation.description


def test_builtin_images_are_crops_of_bundled_photographs():
    images = open_images("builtin", count=28, size=32)
    assert images.description == (
        "builtin: 21 crops of 21 photographs (scikit-image, scikit-learn) + 7 synthetic, 32 px"
    )
    batch = pixels(images.load())
    # pool images 1 and 2 crop `brick` and `camera`, grey photographs repeated into R, G and B
    for index in (1, 2):
        assert (batch[index][..., 0] == batch[index][..., 1]).all()
        assert (batch[index][..., 1] == batch[index][..., 2]).all()
    assert not (batch[0][..., 0] == batch[0][..., 2]).all()  # `astronaut` is in colour


def test_every_fourth_builtin_image_is_synthetic():
    builtin = open_images("builtin", count=12, size=24, seed=2).load()
    synthetic = open_images("synthetic", count=12, size=24, seed=2).load()
    for index in range(12):
        assert torch.equal(builtin[index], synthetic[index]) == (index % 4 == 3)


def test_the_builtin_description_counts_what_this_set_holds():
    assert open_images("builtin", count=8, size=16).description == (
        "builtin: 6 crops of 6 photographs (scikit-image) + 2 synthetic, 16 px"
    )


def test_builtin_skips_a_photograph_that_fails_to_load(monkeypatch, caplog):
    monkeypatch.setattr(
        esq.builtin.data.image_sets, "_PHOTOS", (("scikit-image", "no_such_photo"), ("scikit-image", "camera"))
    )
    with caplog.at_level(logging.WARNING, logger="esq.builtin.data.image_sets"):
        images = open_images("builtin", count=3, size=16)
    assert images.description == "builtin: 3 crops of 1 photograph (scikit-image) + 0 synthetic, 16 px"
    assert "skipping scikit-image photograph 'no_such_photo'" in caplog.text


def test_builtin_falls_back_to_synthetic_when_no_photograph_loads(monkeypatch, caplog):
    monkeypatch.setattr(esq.builtin.data.image_sets, "_PHOTOS", (("scikit-image", "no_such_photo"),))
    log = logging.getLogger("test.imagesets")
    with caplog.at_level(logging.WARNING, logger="test.imagesets"):
        images = open_images("builtin", count=4, size=16, log=log)
    assert images.description == "builtin: no bundled photograph could be loaded, so 4 synthetic only, 16 px"
    assert torch.equal(images.load(), open_images("synthetic", count=4, size=16).load())
    assert "using synthetic images only" in caplog.text


def test_builtin_crops_are_random_squares_some_mirrored(monkeypatch):
    ramp = np.repeat(np.linspace(0, 255, 200)[None, :], 100, axis=0).astype(np.uint8)  # red grows to the right
    photo = Image.fromarray(np.stack([ramp, np.zeros_like(ramp), np.zeros_like(ramp)], axis=2))
    monkeypatch.setattr(esq.builtin.data.image_sets, "_PHOTOS", (("test", "ramp"),))
    monkeypatch.setattr(esq.builtin.data.image_sets, "_load_photo", lambda library, name: photo)
    crops = pixels(open_images("builtin", count=40, size=16).load())[[i for i in range(40) if i % 4 != 3]]
    red = crops[..., 0].astype(int)
    rising = red[:, :, -1].mean(axis=1) > red[:, :, 0].mean(axis=1)
    assert rising.any() and not rising.all()
    # a square of 35–100 % of the shorter side (100 px) spans 35–100 of the 200 columns: 45–128 of red
    spans = np.abs(red[:, :, -1] - red[:, :, 0]).mean(axis=1)
    assert spans.min() > 35 and spans.max() < 130
    assert spans.max() - spans.min() > 30
    assert len({int(left) for left in red[:, 0, 0]}) > 20  # crops start at many places


def test_photographs_with_transparency_are_composited_on_white():
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 255, 128]]], dtype=np.uint8)
    np.testing.assert_array_equal(esq.builtin.data.image_sets._rgb_uint8(rgba), [[WHITE, RED, (127, 127, 255)]])


def test_synthetic_images_are_deterministic_per_generator_state():
    image = synthetic_image(np.random.default_rng(7), 48)
    assert image.shape == (48, 48, 3)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, synthetic_image(np.random.default_rng(7), 48))
    assert not np.array_equal(image, synthetic_image(np.random.default_rng(8), 48))


def test_synthetic_images_have_edges_and_fine_texture():
    image = synthetic_image(np.random.default_rng(0), 96).astype(int)
    steps = np.abs(np.diff(image, axis=1)).max(axis=2)
    assert steps.max() > 60  # a shape's border against the background
    curvature = np.abs(np.diff(image, n=2, axis=1)).max(axis=2)
    assert np.median(curvature) >= 3  # texture: a gradient alone is flat to rounding
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1000


# --- folders ------------------------------------------------------------------------------


def test_folder_images_are_resized_by_the_shorter_side_and_centre_cropped(tmp_path):
    wide = Image.new("RGB", (40, 20), RED)
    wide.paste(BLUE, (20, 0, 40, 20))
    wide.save(tmp_path / "a_wide.png")
    tall = Image.new("RGB", (20, 40), GREEN)
    tall.paste(WHITE, (0, 20, 20, 40))
    tall.save(tmp_path / "b_tall.png")
    wide_image, tall_image = pixels(open_images(str(tmp_path), count=2, size=16).load())
    # the centre 20×20 of 40×20 is x 10..30: red in the left half, blue in the right
    assert (wide_image[:, :7] == RED).all()
    assert (wide_image[:, 9:] == BLUE).all()
    assert (tall_image[:7] == GREEN).all()
    assert (tall_image[9:] == WHITE).all()


def test_folder_images_are_converted_to_rgb(tmp_path):
    solid(tmp_path / "1_grey.png", 90, mode="L")
    solid(tmp_path / "2_transparent.png", (255, 0, 0, 0), mode="RGBA")
    solid(tmp_path / "3_half.png", (0, 0, 255, 128), mode="RGBA")
    Image.fromarray(np.full((10, 12), 32896, dtype=np.uint16)).save(tmp_path / "4_sixteen_bit.png")
    palette = Image.new("P", (12, 10), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30])
    palette.save(tmp_path / "5_palette.png")
    solid(tmp_path / "6_grey_alpha.png", (0, 0), mode="LA")
    palette.save(tmp_path / "7_palette_transparent.png", transparency=1)
    assert Image.open(tmp_path / "4_sixteen_bit.png").mode.startswith("I")
    colours = pixels(open_images(str(tmp_path), count=7, size=8).load())[:, 4, 4]
    np.testing.assert_array_equal(
        colours,
        [
            (90, 90, 90),
            WHITE,
            (127, 127, 255),
            (128, 128, 128),
            (10, 200, 30),
            WHITE,
            WHITE,
        ],
    )


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), RED)
    stored.paste(BLUE, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise
    stored.save(tmp_path / "rotated.png", exif=exif)
    image = pixels(open_images(str(tmp_path), count=1, size=16).load())[0]
    assert (image[:7] == RED).all()
    assert (image[9:] == BLUE).all()


def test_large_jpegs_decoded_at_reduced_scale_nearly_match_a_full_decode(tmp_path):
    y, x = np.mgrid[0:768, 0:1024]
    stripes = (
        127 + 100 * np.sin(2 * np.pi * x / 40)[..., None] * [1, 0.5, -1] + 60 * np.sin(2 * np.pi * y / 28)[..., None]
    )
    noise = np.random.default_rng(0).normal(0, 20, size=(768, 1024, 3))
    Image.fromarray(np.clip(stripes + noise, 0, 255).astype(np.uint8)).save(tmp_path / "big.jpg", quality=95)
    loaded = pixels(open_images(str(tmp_path), count=1, size=64).load())[0].astype(int)
    full = Image.open(tmp_path / "big.jpg").convert("RGB")
    expected = np.asarray(full.resize((64, 64), Image.Resampling.BILINEAR, box=(128, 0, 896, 768))).astype(int)
    assert np.abs(loaded - expected).mean() < 2.5  # decoding at 1× the size instead of 2× gives 3.4


def test_folders_are_read_recursively_in_relative_path_order(tmp_path):
    solid(tmp_path / "b.png", RED)
    solid(tmp_path / "a" / "z.bmp", GREEN)
    solid(tmp_path / "a" / "b" / "c.PNG", BLUE)
    solid(tmp_path / "A.tiff", WHITE)
    (tmp_path / "notes.txt").write_text("not an image")
    images = open_images(str(tmp_path), count=4, size=8)
    colours = pixels(images.load())[:, 4, 4]
    # "A.tiff" < "a/b/c.PNG" < "a/z.bmp" < "b.png"
    np.testing.assert_array_equal(colours, [WHITE, BLUE, GREEN, RED])
    assert images.source == str(tmp_path)
    assert images.description == (
        f"folder {tmp_path}: images 0–3 of 4 image files, shorter side resized to 8 px and centre-cropped"
    )


def test_every_listed_extension_is_read_in_any_case(tmp_path):
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF"}
    formats[".tiff"] = "TIFF"
    assert set(formats) == set(IMAGE_EXTENSIONS)
    for number, (extension, format) in enumerate(formats.items()):
        Image.new("RGB", (8, 8), GREEN).save(tmp_path / f"{number}{extension.upper()}", format=format)
    assert len(open_images(str(tmp_path), count=len(formats), size=8)) == len(formats)


def test_a_folder_offset_selects_later_files(tmp_path):
    for number, colour in enumerate([RED, GREEN, BLUE]):
        solid(tmp_path / f"{number}.png", colour)
    colours = pixels(open_images(str(tmp_path), count=2, size=8, offset=1).load())[:, 4, 4]
    np.testing.assert_array_equal(colours, [GREEN, BLUE])


def test_the_folder_fingerprint_follows_file_bytes_not_other_files(tmp_path):
    solid(tmp_path / "a.png", RED)
    solid(tmp_path / "b.png", GREEN)
    before = open_images(str(tmp_path), count=2, size=8).fingerprint
    (tmp_path / "README.md").write_text("unrelated")
    solid(tmp_path / "c.png", BLUE)  # an image, but not among the two selected
    assert open_images(str(tmp_path), count=2, size=8).fingerprint == before
    solid(tmp_path / "b.png", BLUE)
    assert open_images(str(tmp_path), count=2, size=8).fingerprint != before


def test_the_folder_fingerprint_covers_loading_parameters(tmp_path):
    solid(tmp_path / "a.png", RED)
    solid(tmp_path / "b.png", RED)
    base = open_images(str(tmp_path), count=1, size=8)
    assert base.fingerprint != open_images(str(tmp_path), count=1, size=16).fingerprint
    assert base.fingerprint != open_images(str(tmp_path), count=1, size=8, offset=1).fingerprint
    assert base.fingerprint != open_images(str(tmp_path), count=2, size=8).fingerprint


def test_the_folder_fingerprint_covers_file_names(tmp_path):
    solid(tmp_path / "a.png", RED)
    before = open_images(str(tmp_path), count=1, size=8).fingerprint
    (tmp_path / "a.png").rename(tmp_path / "b.png")
    assert open_images(str(tmp_path), count=1, size=8).fingerprint != before


def test_a_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"image folder .*nowhere does not exist; give an existing folder"):
        open_images(str(tmp_path / "nowhere"), count=1, size=8)


def test_a_file_is_not_a_folder(tmp_path):
    path = solid(tmp_path / "one.png", RED)
    with pytest.raises(DataError, match=r"one\.png is not a folder"):
        open_images(str(path), count=1, size=8)


def test_a_folder_without_images_says_which_extensions_are_read(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError) as caught:
        open_images(str(tmp_path), count=1, size=8)
    assert str(caught.value) == (
        f"no image files in {tmp_path} (read recursively: .jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff); "
        "add images or give another folder"
    )


def test_too_few_images_says_how_many_were_found_and_needed(tmp_path):
    solid(tmp_path / "a.png", RED)
    solid(tmp_path / "b.png", RED)
    with pytest.raises(DataError) as caught:
        open_images(str(tmp_path), count=2, size=8, offset=3)
    assert str(caught.value) == (
        f"image folder {tmp_path} has 2 usable images, 5 needed (offset 3 + count 2); "
        "lower n_reference/n_evaluation or add images"
    )


def test_an_unreadable_file_stops_with_its_name(tmp_path):
    solid(tmp_path / "a.png", RED)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(
        DataError, match=r"cannot decode image .*b\.jpg: .*remove the file; or set on_unreadable = \"skip\""
    ):
        open_images(str(tmp_path), count=2, size=8)


def test_an_unreadable_file_is_skipped_with_a_warning(tmp_path, caplog):
    solid(tmp_path / "a.png", RED)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    solid(tmp_path / "c.png", BLUE)
    with caplog.at_level(logging.WARNING, logger="esq.builtin.data.image_sets"):
        images = open_images(str(tmp_path), count=2, size=8, on_unreadable="skip")
    np.testing.assert_array_equal(pixels(images.load())[:, 4, 4], [RED, BLUE])
    assert "skipping unreadable image" in caplog.text
    assert "b.jpg" in caplog.text


def test_skipped_files_are_counted_when_too_few_remain(tmp_path):
    solid(tmp_path / "a.png", RED)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"has 1 usable images \(1 unreadable skipped\), 2 needed"):
        open_images(str(tmp_path), count=2, size=8, on_unreadable="skip")


def truncated_jpeg(path):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])  # the header opens: PIL decodes the body lazily


def test_a_truncated_jpeg_stops_the_open_naming_the_file(tmp_path):
    solid(tmp_path / "a.png", RED)
    truncated_jpeg(tmp_path / "b.jpg")
    with pytest.raises(DataError, match=r"cannot decode image .*b\.jpg: .*on_unreadable = \"skip\""):
        open_images(str(tmp_path), count=2, size=16)


def test_a_truncated_jpeg_is_skipped_with_on_unreadable_skip(tmp_path, caplog):
    solid(tmp_path / "a.png", RED)
    truncated_jpeg(tmp_path / "b.jpg")
    solid(tmp_path / "c.png", BLUE)
    with caplog.at_level(logging.WARNING, logger="esq.builtin.data.image_sets"):
        images = open_images(str(tmp_path), count=2, size=8, on_unreadable="skip")
    np.testing.assert_array_equal(pixels(images.load())[:, 4, 4], [RED, BLUE])
    assert "b.jpg" in caplog.text


def float_tiff(path, values):
    Image.fromarray(np.asarray(values, dtype=np.float32), mode="F").save(path)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_a_float_tiff_in_zero_one_or_zero_255_keeps_its_brightness(tmp_path, scale):
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1)) * scale
    float_tiff(tmp_path / "a.tif", ramp)
    (image,) = pixels(open_images(str(tmp_path), count=1, size=16).load())
    assert image.shape == (16, 16, 3) and image[:, -1].min() >= 240 and image[:, 0].max() <= 15
    assert abs(int(image[8, 8, 0]) - round(8 / 15 * 255)) <= 10


@pytest.mark.parametrize("values", [[[-1.0, 2.0], [0.0, 1.0]], [[0.0, 1000.0], [0.0, 1.0]], [[np.nan, 0.5], [0, 1]]])
def test_a_float_tiff_of_an_unknown_range_is_refused_or_skipped_naming_it(tmp_path, values, caplog):
    float_tiff(tmp_path / "a.tif", values)
    solid(tmp_path / "b.png", RED)
    with pytest.raises(DataError, match=r"cannot use image .*a\.tif: float pixels in .*on_unreadable"):
        open_images(str(tmp_path), count=1, size=8)
    with caplog.at_level(logging.WARNING, logger="esq.builtin.data.image_sets"):
        images = open_images(str(tmp_path), count=1, size=8, on_unreadable="skip")
    np.testing.assert_array_equal(pixels(images.load())[0, 4, 4], RED)
    assert "a.tif" in caplog.text


def test_a_32_bit_integer_tiff_beyond_16_bits_is_refused_naming_it(tmp_path):
    Image.fromarray(np.array([[0, 70000], [5, 10]], dtype=np.int32), mode="I").save(tmp_path / "a.tif")
    with pytest.raises(DataError, match=r"a\.tif: integer pixels in \[0, 70000\]; esq reads 8- and 16-bit"):
        open_images(str(tmp_path), count=1, size=8)


def test_sixteen_bit_png_cmyk_jpeg_and_palette_png_decode_to_their_colours(tmp_path):
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(tmp_path / "a_grey16.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "b_cmyk.jpg", quality=100)
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 255] + [0] * 765)
    palette.save(tmp_path / "c_palette.png")
    a, b, c = pixels(open_images(str(tmp_path), count=3, size=8).load())[:, 4, 4]
    assert a.tolist() == [255, 255, 255]
    assert b[0] > 240 and b[1] < 15 and b[2] < 15
    assert c.tolist() == [0, 0, 255]


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, "image count must be an integer ≥ 1, got 0"),
        ({"count": 2.0}, "image count must be an integer ≥ 1, got 2.0"),
        ({"count": True}, "image count must be an integer ≥ 1, got True"),
        ({"size": 7}, "image size must be an integer ≥ 8, got 7"),
        ({"offset": -1}, "image offset must be an integer ≥ 0, got -1"),
        ({"seed": "1"}, "image seed must be an integer, got '1'"),
        ({"on_unreadable": "ignore"}, "on_unreadable must be 'stop' or 'skip', got 'ignore'"),
        ({"source": ""}, "image source must be 'builtin', 'synthetic' or a folder path, got ''"),
    ],
)
def test_bad_options_are_config_errors(options, message):
    arguments = {"source": "synthetic", "count": 2, "size": 8} | options
    with pytest.raises(ConfigError) as caught:
        open_images(**arguments)
    assert str(caught.value) == message
