"""Chinese-CLIP's dataset files: TSV + jsonl and LMDB read alike, bad input named by file and line,
LMDB written as cn-clip's own builder writes it and read by cn-clip's own readers."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest
from click.testing import CliRunner
from clip_dataset import write_split
from PIL import Image

from esq.errors import ConfigError, DataError
from esq_clip.lmdb_build import build_lmdb
from esq_clip.lmdb_command import clip
from esq_clip.lmdb_read import load_pair
from esq_clip.splits import RetrievalSet, open_split

TEXTS = [
    (1, "一只红色的猫", [101]),
    (2, "a green field", [102, 103]),
    (3, "蓝天和白云", [103]),
    (4, "Mixed 文字 and “quotes”", [104, 101]),
]


def picture(colour: tuple[int, int, int], size: tuple[int, int] = (6, 4)) -> Image.Image:
    image = Image.new("RGB", size, colour)
    image.putpixel((0, 0), (colour[2], colour[0], colour[1]))  # not a flat image
    return image


def encoded(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


IMAGES = {
    101: picture((255, 0, 0)),
    102: picture((0, 255, 0)),
    103: picture((0, 0, 255)),
    104: picture((10, 20, 30), (3, 5)),
}


@pytest.fixture
def datapath(tmp_path: Path) -> Path:
    """``tmp_path/datasets/toy`` with a valid split, its fourth image a JPEG."""
    images = {**IMAGES, 104: encoded(IMAGES[104], "JPEG")}
    write_split(tmp_path / "datasets" / "toy", "valid", images, TEXTS)
    return tmp_path


def dataset_dir(datapath: Path) -> Path:
    return datapath / "datasets" / "toy"


def write_raw(datapath: Path, tsv: str | None = None, jsonl: str | None = None, split: str = "valid") -> None:
    folder = dataset_dir(datapath)
    if tsv is not None:
        (folder / f"{split}_imgs.tsv").write_text(tsv, encoding="utf-8")
    if jsonl is not None:
        (folder / f"{split}_texts.jsonl").write_text(jsonl, encoding="utf-8")


def tsv_line(image_id: object, image: Image.Image | bytes = IMAGES[101]) -> str:
    data = image if isinstance(image, bytes) else encoded(image)
    return f"{image_id}\t{base64.b64encode(data).decode()}\n"


def jsonl_line(text_id: object = 1, text: object = "猫", image_ids: object = (101,)) -> str:
    image_ids = list(image_ids) if isinstance(image_ids, tuple) else image_ids
    return json.dumps({"text_id": text_id, "text": text, "image_ids": image_ids}, ensure_ascii=False) + "\n"


GOOD_TSV = "".join(tsv_line(image_id) for image_id in (101, 102))
GOOD_JSONL = jsonl_line(1, "猫", (101,)) + jsonl_line(2, "dog", (102,))


def pixels(image: Image.Image) -> list:
    return [image.mode, image.size, image.tobytes()]


# --- reading -----------------------------------------------------------------------------------


def test_write_split_writes_the_chinese_clip_format(tmp_path):
    tsv, jsonl = write_split(tmp_path, "test", {5: IMAGES[101], 6: b"raw"}, [(9, "红", [5, 6])])
    assert tsv.read_text() == f"5\t{base64.b64encode(encoded(IMAGES[101])).decode()}\n6\tcmF3\n"
    assert json.loads(jsonl.read_text(encoding="utf-8")) == {"text_id": 9, "text": "红", "image_ids": [5, 6]}


def test_tsv_split_reads_ids_texts_and_name_in_file_order(datapath):
    split = open_split(datapath, "toy", "valid")
    assert split.name == "toy/valid"
    assert split.image_ids == [101, 102, 103, 104]
    assert split.texts == TEXTS
    assert len(split.image_ids) == 4
    assert repr(split) == "RetrievalSet('toy/valid': 4 images, 4 texts, from TSV)"


def test_images_decode_to_the_pixels_that_were_encoded(datapath):
    split = open_split(datapath, "toy", "valid")
    for image_id in (101, 102, 103):
        assert pixels(split.image(image_id)) == pixels(IMAGES[image_id])
    jpeg = Image.open(io.BytesIO(encoded(IMAGES[104], "JPEG"))).convert("RGB")
    assert pixels(split.image(104)) == pixels(jpeg)
    assert [image.size for image in split.images([104, 101])] == [(3, 5), (6, 4)]


def test_images_are_rgb_whatever_their_mode(datapath):
    write_split(dataset_dir(datapath), "valid", {101: Image.new("L", (2, 2), 7), 102: Image.new("RGBA", (2, 2))}, [])
    write_raw(datapath, jsonl=jsonl_line())
    split = open_split(datapath, "toy", "valid")
    assert [image.mode for image in split.images([101, 102])] == ["RGB", "RGB"]
    assert split.image(101).getpixel((1, 1)) == (7, 7, 7)


def test_url_safe_base64_is_read_as_cn_clip_reads_it(datapath):
    data = encoded(IMAGES[102])
    urlsafe = base64.urlsafe_b64encode(data).decode()
    write_raw(datapath, tsv=f"101\t{urlsafe}\n", jsonl=jsonl_line())
    assert pixels(open_split(datapath, "toy", "valid").image(101)) == pixels(IMAGES[102])


def test_spaces_around_the_base64_are_dropped_as_cn_clips_builder_does(datapath):
    write_raw(datapath, tsv=tsv_line(101).replace("\t", "\t  ").replace("\n", " \n"), jsonl=jsonl_line())
    assert pixels(open_split(datapath, "toy", "valid").image(101)) == pixels(IMAGES[101])
    build_lmdb(dataset_dir(datapath), ["valid"])
    assert pixels(open_split(datapath, "toy", "valid").image(101)) == pixels(IMAGES[101])


def test_tsv_images_are_read_from_disk_when_asked_for(datapath):
    split = open_split(datapath, "toy", "valid")
    tsv = dataset_dir(datapath) / "valid_imgs.tsv"
    same_length = tsv.read_bytes().replace(
        base64.b64encode(encoded(IMAGES[101])), base64.b64encode(encoded(picture((0, 255, 0))))
    )
    tsv.write_bytes(same_length)
    assert pixels(split.image(101)) == pixels(picture((0, 255, 0)))


def test_a_file_without_a_final_newline_is_read(datapath):
    write_raw(datapath, tsv=GOOD_TSV.rstrip("\n"), jsonl=GOOD_JSONL.rstrip("\n"))
    split = open_split(datapath, "toy", "valid")
    assert (split.image_ids, [text for _, text, _ in split.texts]) == ([101, 102], ["猫", "dog"])


def test_windows_line_endings_are_read(datapath):
    write_raw(datapath, tsv=GOOD_TSV.replace("\n", "\r\n"), jsonl=GOOD_JSONL.replace("\n", "\r\n"))
    split = open_split(datapath, "toy", "valid")
    assert pixels(split.image(102)) == pixels(IMAGES[101])


def test_text_to_images_follows_the_annotations(datapath):
    split = open_split(datapath, "toy", "valid")
    assert split.text_to_images() == {1: [101], 2: [102, 103], 3: [103], 4: [104, 101]}


def test_image_to_texts_equals_cn_clips_transform(datapath, tmp_path):
    annotations = dataset_dir(datapath) / "valid_texts.jsonl"
    subprocess.run(
        [sys.executable, "-m", "cn_clip.eval.transform_ir_annotation_to_tr", "--input", str(annotations)],
        check=True,
        capture_output=True,
    )
    lines = (dataset_dir(datapath) / "valid_texts.tr.jsonl").read_text().splitlines()
    official = {record["image_id"]: record["text_ids"] for record in map(json.loads, lines)}
    ours = open_split(datapath, "toy", "valid").image_to_texts()
    assert list(ours.items()) == list(official.items())
    assert ours == {101: [1, 4], 102: [2], 103: [2, 3], 104: [4]}


@pytest.mark.parametrize("source", ["tsv", "lmdb"])
def test_an_image_id_the_split_lacks_is_one_line_naming_the_file_and_the_id(datapath, source):
    if source == "lmdb":
        build_lmdb(dataset_dir(datapath), ["valid"])
    with pytest.raises(DataError, match=r"(valid_imgs.tsv|imgs): no image 999; ask for the ids of this split"):
        open_split(datapath, "toy", "valid", source=source).image(999)


def test_a_set_pickles_for_worker_processes(datapath):
    build_lmdb(dataset_dir(datapath), ["valid"])
    for source in ("tsv", "lmdb"):
        split = open_split(datapath, "toy", "valid", source=source)
        split.image(101)  # opens a handle, which must not travel
        copy = pickle.loads(pickle.dumps(split))
        assert copy == split
        assert pixels(copy.image(103)) == pixels(IMAGES[103])


# --- LMDB --------------------------------------------------------------------------------------


def test_lmdb_and_tsv_give_the_same_split(datapath):
    assert build_lmdb(dataset_dir(datapath), ["valid"]) == {"valid": (4, 6)}
    from_tsv = open_split(datapath, "toy", "valid", source="tsv")
    from_lmdb = open_split(datapath, "toy", "valid", source="lmdb")
    assert repr(from_lmdb) == "RetrievalSet('toy/valid': 4 images, 4 texts, from LMDB)"
    assert from_lmdb == from_tsv
    for first, second in zip(from_tsv.images(from_tsv.image_ids), from_lmdb.images(from_tsv.image_ids), strict=True):
        assert pixels(first) == pixels(second)


def test_lmdb_pairs_rebuild_the_texts_without_the_jsonl(datapath):
    build_lmdb(dataset_dir(datapath), ["valid"])
    for name in ("valid_imgs.tsv", "valid_texts.jsonl"):
        (dataset_dir(datapath) / name).unlink()
    split = open_split(datapath, "toy", "valid")
    assert split.texts == TEXTS
    assert split.image_to_texts() == {101: [1, 4], 102: [2], 103: [2, 3], 104: [4]}
    assert pixels(split.image(104)) == pixels(Image.open(io.BytesIO(encoded(IMAGES[104], "JPEG"))).convert("RGB"))


def test_lmdb_texts_come_from_the_jsonl_when_there_as_cn_clips_evaluation_reads_them(datapath):
    build_lmdb(dataset_dir(datapath), ["valid"])
    write_raw(datapath, jsonl=jsonl_line(8, "只有这一句", (103, 102)))
    assert open_split(datapath, "toy", "valid", source="lmdb").texts == [(8, "只有这一句", [103, 102])]


def test_auto_reads_lmdb_when_it_exists_and_tsv_otherwise(datapath):
    assert "from TSV" in repr(open_split(datapath, "toy", "valid"))
    build_lmdb(dataset_dir(datapath), ["valid"])
    assert "from LMDB" in repr(open_split(datapath, "toy", "valid"))
    assert "from TSV" in repr(open_split(datapath, "toy", "valid", source="tsv"))


def test_lmdb_gallery_is_in_the_key_order_cn_clip_reads(datapath):
    from cn_clip.eval.data import EvalImgDataset

    write_raw(datapath, tsv="".join(tsv_line(image_id) for image_id in (3, 20, 100)), jsonl=jsonl_line(1, "x", (3,)))
    build_lmdb(dataset_dir(datapath), ["valid"])
    split = open_split(datapath, "toy", "valid")
    official = EvalImgDataset(str(dataset_dir(datapath) / "lmdb" / "valid" / "imgs"), resolution=8)
    assert split.image_ids == [official[index][0] for index in range(len(official))] == [100, 20, 3]


def test_build_lmdb_writes_what_cn_clips_builder_writes(datapath, tmp_path):
    ours = build_lmdb(dataset_dir(datapath), ["valid"], tmp_path / "ours")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cn_clip.preprocess.build_lmdb_dataset",
            "--data_dir",
            str(dataset_dir(datapath)),
            "--splits",
            "valid",
            "--lmdb_dir",
            str(tmp_path / "official"),
        ],
        check=True,
        capture_output=True,
    )
    for part in ("imgs", "pairs"):
        contents = []
        for root in ("ours", "official"):
            environment = lmdb.open(str(tmp_path / root / "valid" / part), readonly=True, lock=False)
            with environment.begin() as transaction:
                contents.append(list(transaction.cursor()))
            environment.close()
        assert contents[0] == contents[1], part
    assert ours == {"valid": (4, 6)}


def test_cn_clips_readers_accept_the_lmdb(datapath):
    from cn_clip.eval.data import EvalImgDataset
    from cn_clip.training.data import LMDBDataset

    build_lmdb(dataset_dir(datapath), ["valid"])
    folder = dataset_dir(datapath) / "lmdb" / "valid"
    environment = lmdb.open(str(folder / "pairs"), readonly=True, lock=False)
    with environment.begin() as transaction:
        count = int(transaction.get(b"num_samples").decode("utf-8"))
        pairs = [pickle.loads(transaction.get(str(index).encode("utf-8"))) for index in range(count)]
    environment.close()
    assert pairs == [(image_id, text_id, text) for text_id, text, ids in TEXTS for image_id in ids]

    evaluation = EvalImgDataset(str(folder / "imgs"), resolution=16)
    assert len(evaluation) == 4
    assert sorted(evaluation[index][0] for index in range(4)) == [101, 102, 103, 104]
    training = LMDBDataset(str(folder), split="val", max_txt_length=16, resolution=16)
    assert len(training) == 6
    image, text, _ = training[5]
    assert tuple(image.shape) == (3, 16, 16) and tuple(text.shape) == (16,)


def test_build_lmdb_replaces_an_older_lmdb(datapath):
    build_lmdb(dataset_dir(datapath), ["valid"])
    write_raw(datapath, tsv=GOOD_TSV, jsonl=GOOD_JSONL)
    assert build_lmdb(dataset_dir(datapath), ["valid", "valid"]) == {"valid": (2, 2)}
    split = open_split(datapath, "toy", "valid", source="lmdb")
    assert split.image_ids == [101, 102]
    assert sorted(path.name for path in (dataset_dir(datapath) / "lmdb").iterdir()) == ["valid"]


def test_a_bad_line_late_in_the_jsonl_leaves_no_lmdb(datapath):
    write_raw(datapath, jsonl="".join(jsonl_line(text_id, "t", (101,)) for text_id in range(50)) + "{oops\n")
    with pytest.raises(DataError, match=r"valid_texts\.jsonl, line 51: not valid JSON"):
        build_lmdb(dataset_dir(datapath), ["valid"])
    assert not (dataset_dir(datapath) / "lmdb").exists()


def test_a_bad_later_split_leaves_no_lmdb_of_the_good_one(datapath):
    write_split(dataset_dir(datapath), "test", IMAGES, [(1, "x", [999])])
    with pytest.raises(DataError, match=r"test_texts\.jsonl, line 1: text 1 names image 999"):
        build_lmdb(dataset_dir(datapath), ["valid", "test"])
    assert not (dataset_dir(datapath) / "lmdb").exists()


def test_build_lmdb_checks_base64(datapath):
    write_raw(datapath, tsv=GOOD_TSV + "103\tnot*base64\n")
    with pytest.raises(DataError, match=r"valid_imgs\.tsv, line 3: image 103 is not valid base64"):
        build_lmdb(dataset_dir(datapath), ["valid"])
    assert not (dataset_dir(datapath) / "lmdb").exists()


def test_a_failure_while_writing_leaves_no_lmdb(datapath, monkeypatch):
    import esq_clip.lmdb_build

    written = []
    original = esq_clip.lmdb_build.write_lmdb

    def fail_on_images(lmdb_module, path, items, count_key, count):
        original(lmdb_module, path, items, count_key, count)
        written.append(path.name)
        if path.name == "imgs":
            raise OSError("disk full")

    monkeypatch.setattr(esq_clip.lmdb_build, "write_lmdb", fail_on_images)
    with pytest.raises(OSError, match="disk full"):
        build_lmdb(dataset_dir(datapath), ["valid"])
    assert written == ["pairs", "imgs"]
    assert not (dataset_dir(datapath) / "lmdb").exists()


def test_a_failed_rebuild_keeps_the_older_lmdb(datapath, monkeypatch):
    import esq_clip.lmdb_build

    build_lmdb(dataset_dir(datapath), ["valid"])

    def fail(*arguments):
        raise OSError("disk full")

    monkeypatch.setattr(esq_clip.lmdb_build, "write_lmdb", fail)
    with pytest.raises(OSError):
        build_lmdb(dataset_dir(datapath), ["valid"])
    assert sorted(path.name for path in (dataset_dir(datapath) / "lmdb").iterdir()) == ["valid"]
    assert open_split(datapath, "toy", "valid", source="lmdb").texts == TEXTS


def test_build_lmdb_grows_the_map_when_it_fills(datapath, monkeypatch):
    import esq_clip.lmdb_build

    monkeypatch.setattr(esq_clip.lmdb_build, "BATCH_ENTRIES", 2)
    monkeypatch.setattr(esq_clip.lmdb_build, "FIRST_MAP_SIZE", 2**16)
    big = {image_id: Image.effect_noise((200, 200), 80).convert("RGB") for image_id in range(1, 6)}
    write_split(dataset_dir(datapath), "big", big, [(1, "noise", [1, 5])])
    assert build_lmdb(dataset_dir(datapath), ["big"]) == {"big": (5, 2)}
    split = open_split(datapath, "toy", "big")
    assert pixels(split.image(5)) == pixels(big[5])


# --- pickles in the pairs LMDB -----------------------------------------------------------------


class RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def replace_pair(datapath: Path, value: bytes) -> Path:
    build_lmdb(dataset_dir(datapath), ["valid"])
    (dataset_dir(datapath) / "valid_texts.jsonl").unlink()
    pairs = dataset_dir(datapath) / "lmdb" / "valid" / "pairs"
    environment = lmdb.open(str(pairs))
    with environment.begin(write=True) as transaction:
        transaction.put(b"2", value)
    environment.close()
    return pairs


def test_a_pickle_that_would_run_code_is_refused(datapath, tmp_path):
    marker = tmp_path / "ran"
    replace_pair(datapath, pickle.dumps((101, RunsACommand(marker), "x")))
    with pytest.raises(DataError, match=r"pairs, key '2': not a pickled \(image_id, text_id, text\) \(refused"):
        open_split(datapath, "toy", "valid")
    assert not marker.exists()


@pytest.mark.parametrize(
    "value",
    [pickle.dumps(os.system), pickle.dumps(Path("x")), pickle.dumps({"a": 1})],
    ids=["function", "class", "dict"],
)
def test_load_pair_refuses_anything_but_a_plain_triple(value):
    with pytest.raises(DataError, match="rebuild the LMDB"):
        load_pair(value, "here")


@pytest.mark.parametrize("value", [[1, 2, "x"], (1, 2), (1, 2, 3), (True, 2, "x"), (1, 2, "x", 4)])
def test_load_pair_wants_image_id_text_id_and_text(value):
    with pytest.raises(DataError, match=r"here: expected \(image_id, text_id, text\)"):
        load_pair(pickle.dumps(value), "here")


def test_load_pair_reads_the_official_format():
    assert load_pair(pickle.dumps((7, 3, "文本"))) == (7, 3, "文本")


# --- bad input ---------------------------------------------------------------------------------

BAD_TSV = [
    ("no-tab", "101 abc\n", r"valid_imgs\.tsv, line 1: expected image_id<TAB>base64 \(one TAB\), found 0 TABs"),
    ("two-tabs", GOOD_TSV + "103\tab\tcd\n", r"valid_imgs\.tsv, line 3: .*found 2 TABs"),
    ("word-id", "cat\tAAAA\n", r"valid_imgs\.tsv, line 1: image id 'cat' is not an integer"),
    ("float-id", GOOD_TSV + "1.5\tAAAA\n", r"valid_imgs\.tsv, line 3: image id '1.5' is not an integer"),
    ("zero-padded-id", "0101\tAAAA\n", r"valid_imgs\.tsv, line 1: image id '0101' is not an integer"),
    ("duplicate-id", GOOD_TSV + tsv_line(101), r"valid_imgs\.tsv, line 3: image id 101 again \(first on line 1\)"),
    ("no-base64", "101\t \n", r"valid_imgs\.tsv, line 1: image 101 has no base64 after the TAB"),
    ("space-in-id", "101 \tAAAA\n", r"valid_imgs\.tsv, line 1: image id '101 ' is not an integer"),
    ("blank-line", tsv_line(101) + "\n" + tsv_line(102), r"valid_imgs\.tsv, line 2: empty line"),
    ("trailing-blank-line", GOOD_TSV + "\n", r"valid_imgs\.tsv, line 3: empty line"),
    ("empty-file", "", r"valid_imgs\.tsv: no images"),
]


@pytest.mark.parametrize(("tsv", "message"), [case[1:] for case in BAD_TSV], ids=[case[0] for case in BAD_TSV])
def test_bad_tsv_lines_are_named_by_file_and_line(datapath, tsv, message):
    write_raw(datapath, tsv=tsv, jsonl=jsonl_line())
    with pytest.raises(DataError, match=message):
        open_split(datapath, "toy", "valid")


BAD_JSONL = [
    ("invalid-json", GOOD_JSONL + '{"text_id": 3,\n', r"line 3: not valid JSON"),
    ("not-an-object", "[1, 2]\n", r"line 1: expected a JSON object, found list"),
    ("missing-fields", GOOD_JSONL + '{"text_id": 3}\n', r"line 3: missing text, image_ids"),
    ("string-text-id", jsonl_line("1"), r"line 1: text_id '1' is not an integer"),
    ("float-text-id", jsonl_line(1.0), r"line 1: text_id 1\.0 is not an integer"),
    ("bool-text-id", jsonl_line(True), r"line 1: text_id True is not an integer"),
    ("duplicate-text-id", GOOD_JSONL + jsonl_line(1), r"line 3: text_id 1 again \(first on line 1\)"),
    ("number-text", jsonl_line(1, 5), r"line 1: text of text 1 is 5, not a string"),
    ("image-ids-not-a-list", jsonl_line(1, "x", 101), r"line 1: image_ids of text 1 is 101, not a list of integers"),
    ("string-image-id", jsonl_line(1, "x", ["101"]), r"line 1: image_ids of text 1 is \['101'\]"),
    ("empty-image-ids", GOOD_JSONL + jsonl_line(3, "x", ()), r"line 3: text 3 has no image_ids"),
    ("missing-image", GOOD_JSONL + jsonl_line(3, "x", (101, 7)), r"line 3: text 3 names image 7, which is not in"),
    ("image-twice", jsonl_line(1, "x", (101, 101)), r"line 1: text 1 names an image twice"),
    ("blank-line", jsonl_line(1) + "\n" + jsonl_line(2), r"line 2: empty line"),
    ("trailing-blank-line", GOOD_JSONL + "\n", r"line 3: empty line"),
    ("empty-file", "", r"valid_texts\.jsonl: no texts"),
]


@pytest.mark.parametrize(("jsonl", "message"), [case[1:] for case in BAD_JSONL], ids=[case[0] for case in BAD_JSONL])
def test_bad_jsonl_lines_are_named_by_file_and_line(datapath, jsonl, message):
    write_raw(datapath, tsv=GOOD_TSV, jsonl=jsonl)
    with pytest.raises(DataError, match=message if message.startswith("valid") else r"valid_texts\.jsonl, " + message):
        open_split(datapath, "toy", "valid")


def test_a_missing_image_names_the_gallery_file(datapath):
    write_raw(datapath, tsv=GOOD_TSV, jsonl=jsonl_line(1, "x", (7,)))
    with pytest.raises(DataError) as caught:
        open_split(datapath, "toy", "valid")
    assert str(dataset_dir(datapath) / "valid_imgs.tsv") in str(caught.value)


@pytest.mark.parametrize(
    ("base64_text", "message"),
    [
        ("QUJD*REVG", r"line 2: image 102 is not valid base64"),
        ("AAAAA", r"line 2: image 102 is not valid base64"),
        (base64.b64encode(b"hello, not an image").decode(), r"line 2: image 102 does not decode as an image"),
    ],
    ids=["bad-character", "bad-padding", "not-an-image"],
)
def test_an_undecodable_image_is_named_when_decoded(datapath, base64_text, message):
    write_raw(datapath, tsv=tsv_line(101) + f"102\t{base64_text}\n", jsonl=jsonl_line())
    split = open_split(datapath, "toy", "valid")
    split.image(101)
    with pytest.raises(DataError, match=r"valid_imgs\.tsv, " + message):
        split.image(102)


def test_an_undecodable_lmdb_image_is_named_by_key(datapath):
    write_raw(datapath, tsv=tsv_line(101) + tsv_line(102, b"not an image"), jsonl=jsonl_line())
    build_lmdb(dataset_dir(datapath), ["valid"])
    split = open_split(datapath, "toy", "valid")
    with pytest.raises(DataError, match=r"imgs, key '102': image 102 does not decode as an image"):
        split.image(102)


def put(path: Path, key: bytes, value: bytes | None) -> None:
    environment = lmdb.open(str(path))
    with environment.begin(write=True) as transaction:
        if value is None:
            transaction.delete(key)
        else:
            transaction.put(key, value)
    environment.close()


@pytest.mark.parametrize(
    ("part", "key", "value", "message"),
    [
        ("imgs", b"num_images", b"9", r"imgs: num_images says 9 but the LMDB holds 4 images"),
        ("imgs", b"num_images", None, r"imgs: key num_images is missing"),
        ("imgs", b"cat", b"AAAA", r"imgs: key 'cat' is not an integer image id"),
        ("pairs", b"3", None, r"pairs, key '3': missing \(num_samples says 6\)"),
        ("pairs", b"num_samples", b"six", r"pairs: key num_samples is 'six', not a count"),
        ("pairs", b"0", pickle.dumps((555, 1, "一只红色的猫")), r"pairs, key '0': text 1 names image 555"),
        ("pairs", b"1", pickle.dumps((102, 1, "another")), r"pairs, key '1': text 1 is 'another' here"),
    ],
    ids=["count-mismatch", "no-count", "word-key", "missing-pair", "bad-count", "missing-image", "text-differs"],
)
def test_a_damaged_lmdb_is_named_with_its_key(datapath, part, key, value, message):
    build_lmdb(dataset_dir(datapath), ["valid"])
    (dataset_dir(datapath) / "valid_texts.jsonl").unlink()
    put(dataset_dir(datapath) / "lmdb" / "valid" / part, key, value)
    with pytest.raises(DataError, match=message):
        open_split(datapath, "toy", "valid")


def test_missing_folders_and_files_say_what_was_expected(datapath):
    with pytest.raises(DataError, match=r"nowhere: no such datapath folder"):
        open_split(datapath / "nowhere", "toy", "valid")
    with pytest.raises(DataError, match=r"datasets/MUGE: no such dataset folder \(found: toy\)"):
        open_split(datapath, "MUGE", "valid")
    with pytest.raises(DataError, match=r"test_imgs\.tsv: no such file \(expected lines image_id<TAB>base64"):
        open_split(datapath, "toy", "test")
    (dataset_dir(datapath) / "valid_texts.jsonl").unlink()
    with pytest.raises(DataError, match=r"valid_texts\.jsonl: no such file \(expected lines \{\"text_id\""):
        open_split(datapath, "toy", "valid")
    with pytest.raises(DataError, match=r"lmdb/valid: no such LMDB folder.*esq clip build-lmdb"):
        open_split(datapath, "toy", "valid", source="lmdb")
    (dataset_dir(datapath) / "lmdb" / "valid").mkdir(parents=True)
    with pytest.raises(DataError, match=r"lmdb/valid/imgs: no such LMDB folder"):
        open_split(datapath, "toy", "valid")
    with pytest.raises(DataError, match=r"datasets/toy/nothing: no such dataset folder"):
        build_lmdb(dataset_dir(datapath) / "nothing", ["valid"])


def test_lmdb_without_pairs_or_jsonl_says_where_the_texts_should_be(datapath):
    build_lmdb(dataset_dir(datapath), ["valid"])
    (dataset_dir(datapath) / "valid_texts.jsonl").unlink()
    for name in os.listdir(dataset_dir(datapath) / "lmdb" / "valid" / "pairs"):
        os.remove(dataset_dir(datapath) / "lmdb" / "valid" / "pairs" / name)
    os.rmdir(dataset_dir(datapath) / "lmdb" / "valid" / "pairs")
    with pytest.raises(DataError, match=r"pairs: no such LMDB folder, and no .*valid_texts\.jsonl either"):
        open_split(datapath, "toy", "valid")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda path: open_split(path, "toy", "valid", source="csv"), "data source must be"),
        (lambda path: open_split(path, "../toy", "valid"), "dataset must be a folder name"),
        (lambda path: open_split(path, "toy", "../valid"), "split must be a name"),
        (lambda path: build_lmdb(dataset_dir(path), []), "no splits to build"),
    ],
    ids=["source", "dataset", "split", "no-splits"],
)
def test_bad_arguments_are_config_errors(datapath, call, message):
    with pytest.raises(ConfigError, match=message):
        call(datapath)


def test_a_set_made_without_a_store_says_so():
    split = RetrievalSet("x", [1], [(1, "a", [1])])
    with pytest.raises(ValueError, match="without an image store"):
        split.image(1)


# --- esq clip build-lmdb -----------------------------------------------------------------------


def test_build_lmdb_command_prints_a_line_per_split(datapath):
    write_split(dataset_dir(datapath), "test", {7: IMAGES[101], 8: IMAGES[102]}, [(1, "x", [7, 8])])
    arguments = ["build-lmdb", "--datapath", str(datapath), "--dataset", "toy", "--splits", "valid, test"]
    result = CliRunner().invoke(clip, arguments)
    assert result.exit_code == 0, result.output
    folder = dataset_dir(datapath) / "lmdb"
    assert result.output.splitlines() == [
        f"valid: 4 images, 6 pairs -> {folder / 'valid'}",
        f"test: 2 images, 2 pairs -> {folder / 'test'}",
    ]
    assert open_split(datapath, "toy", "test", source="lmdb").texts == [(1, "x", [7, 8])]


def test_build_lmdb_command_writes_to_lmdb_dir(datapath, tmp_path):
    arguments = [
        "--datapath",
        str(datapath),
        "--dataset",
        "toy",
        "--splits",
        "valid",
        "--lmdb-dir",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(clip, ["build-lmdb", *arguments])
    assert result.exit_code == 0, result.output
    assert result.output == f"valid: 4 images, 6 pairs -> {tmp_path / 'o' / 'valid'}\n"
    assert sorted(path.name for path in (tmp_path / "o" / "valid").iterdir()) == ["imgs", "pairs"]
    assert not (dataset_dir(datapath) / "lmdb").exists()


def test_build_lmdb_command_raises_esq_errors(datapath):
    write_raw(datapath, jsonl=GOOD_JSONL + "\n")
    arguments = ["build-lmdb", "--datapath", str(datapath), "--dataset", "toy", "--splits", "valid"]
    result = CliRunner().invoke(clip, arguments)
    assert isinstance(result.exception, DataError)
    assert "valid_texts.jsonl, line 3: empty line" in str(result.exception)
    result = CliRunner().invoke(clip, [*arguments[:-1], " , "])
    assert isinstance(result.exception, ConfigError)
    assert "--splits names no split" in str(result.exception)
