"""Test support: a Chinese-CLIP dataset split written from images and texts (``write_split``)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from PIL import Image

from esq import open_atomic


def write_split(
    dataset_dir: Path,
    split: str,
    images: Mapping[int, Image.Image | bytes],
    texts: Iterable[tuple[int, str, Sequence[int]]],
) -> tuple[Path, Path]:
    """Write ``{split}_imgs.tsv`` and ``{split}_texts.jsonl`` in Chinese-CLIP's format: images given
    as PIL images are stored as PNG, bytes as they are (an encoded image file), both in standard
    base64 as Chinese-CLIP's data preparation does. Nothing is checked here; ``open_split`` checks
    what it reads. Returns the two paths.
    """
    dataset_dir = Path(dataset_dir)
    tsv, jsonl = dataset_dir / f"{split}_imgs.tsv", dataset_dir / f"{split}_texts.jsonl"
    with open_atomic(tsv) as handle:
        for image_id, image in images.items():
            if not isinstance(image, bytes):
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                image = buffer.getvalue()
            handle.write(f"{image_id}\t{base64.b64encode(image).decode('ascii')}\n")
    with open_atomic(jsonl) as handle:
        for text_id, text, image_ids in texts:
            record = {"text_id": text_id, "text": text, "image_ids": list(image_ids)}
            handle.write(f"{json.dumps(record, ensure_ascii=False)}\n")
    return tsv, jsonl
