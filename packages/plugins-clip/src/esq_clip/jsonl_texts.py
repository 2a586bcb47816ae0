"""The texts of a ``{split}_texts.jsonl``: one line per text, ``{"text_id": int, "text": str,
"image_ids": [int, ...]}``, the ground truth of text-to-image retrieval."""

from __future__ import annotations

import json
from pathlib import Path

from esq import DataError
from esq_clip.fields import is_integer

JSONL_FORMAT = 'lines {"text_id": int, "text": str, "image_ids": [int, ...]}'


def read_texts(path: Path, gallery: set[int], gallery_path: Path) -> list[tuple[int, str, list[int]]]:
    """The texts of a ``{split}_texts.jsonl``, ``(text_id, text, image_ids)`` in file order, each
    checked: integer ids, no id twice, every image in ``gallery`` (the ids of ``gallery_path``).

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "valid_texts.jsonl"
    >>> _ = path.write_text('{"text_id": 1, "text": "猫", "image_ids": [7]}\\n', encoding="utf-8")
    >>> read_texts(path, {7}, pathlib.Path("valid_imgs.tsv"))
    [(1, '猫', [7])]
    >>> read_texts(path, {8}, pathlib.Path("valid_imgs.tsv"))
    Traceback (most recent call last):
    ...
    esq.errors.DataError: .../valid_texts.jsonl, line 1: text 1 names image 7, which is not in valid_imgs.tsv; ...
    """
    texts: list[tuple[int, str, list[int]]] = []
    line_of: dict[int, int] = {}
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            where = f"{path}, line {number}"
            if not line.strip():
                raise DataError(f"{where}: empty line; remove it (the file holds {JSONL_FORMAT})")
            try:
                record = json.loads(line)
            except ValueError as error:
                raise DataError(f"{where}: not valid JSON ({error}); write one JSON object per line") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, found {type(record).__name__}; {JSONL_FORMAT}")
            missing = [key for key in ("text_id", "text", "image_ids") if key not in record]
            if missing:
                raise DataError(f"{where}: missing {', '.join(missing)}; each line needs text_id, text and image_ids")
            text_id, text, image_ids = record["text_id"], record["text"], record["image_ids"]
            if not is_integer(text_id):
                raise DataError(f"{where}: text_id {text_id!r} is not an integer; give each text an integer id")
            if text_id in line_of:
                raise DataError(
                    f"{where}: text_id {text_id} again (first on line {line_of[text_id]}); give each text its own id"
                )
            if not isinstance(text, str):
                raise DataError(f"{where}: text of text {text_id} is {text!r}, not a string; write the text in quotes")
            if not isinstance(image_ids, list) or not all(is_integer(item) for item in image_ids):
                raise DataError(
                    f"{where}: image_ids of text {text_id} is {image_ids!r}, not a list of integers; "
                    "list the ids of the images the text describes"
                )
            if not image_ids:
                raise DataError(
                    f"{where}: text {text_id} has no image_ids; list at least one image it describes, or remove it"
                )
            for image_id in image_ids:
                if image_id not in gallery:
                    raise DataError(
                        f"{where}: text {text_id} names image {image_id}, which is not in {gallery_path}; "
                        "add the image there or remove the id from image_ids"
                    )
            if len(set(image_ids)) != len(image_ids):
                raise DataError(f"{where}: text {text_id} names an image twice in {image_ids}; list each image once")
            line_of[text_id] = number
            texts.append((text_id, text, image_ids))
    if not texts:
        raise DataError(f"{path}: no texts; the file should hold {JSONL_FORMAT}")
    return texts
