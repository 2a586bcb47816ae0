"""The images of a ``{split}_imgs.tsv``: one line per image, ``image_id<TAB>base64 of the encoded
image``, indexed in one pass and read from disk when asked for."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from esq import DataError
from esq_clip.fields import INTEGER, shown
from esq_clip.images import decode_base64, decode_image

if TYPE_CHECKING:
    from PIL import Image

TSV_FORMAT = "lines image_id<TAB>base64 of the encoded image"


class TsvImages:
    """Where each image's base64 lies in a TSV file (byte offset and length); nothing else is kept.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "valid_imgs.tsv"
    >>> _ = path.write_bytes(b"7\\tbm90IGFuIGltYWdl\\n3\\tYQ==\\n")
    >>> store = TsvImages.index(path)
    >>> store.image_ids, list(store.encoded())
    ([7, 3], [(b'7', b'bm90IGFuIGltYWdl'), (b'3', b'YQ==')])
    """

    kind = "TSV"

    def __init__(self, path: Path, image_ids: list[int], offsets: array, lengths: array) -> None:
        self.path = path
        self.image_ids = image_ids
        self._offsets = offsets
        self._lengths = lengths
        self._row = {image_id: row for row, image_id in enumerate(image_ids)}

    @classmethod
    def index(cls, path: Path, *, check_base64: bool = False) -> TsvImages:
        """One pass over ``path``: checks each line's form and id, and notes where its base64 is."""
        image_ids: list[int] = []
        offsets, lengths = array("q"), array("q")
        line_of: dict[int, int] = {}
        offset = 0
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                where = f"{path}, line {number}"
                content = line.rstrip(b"\r\n")
                if not content.strip():
                    raise DataError(f"{where}: empty line; remove it (the file holds {TSV_FORMAT})")
                tabs = content.count(b"\t")
                if tabs != 1:
                    raise DataError(
                        f"{where}: expected image_id<TAB>base64 (one TAB), found {tabs} TABs; "
                        "write one image per line with a single TAB after its id"
                    )
                raw_id, padded = content.split(b"\t")
                encoded = padded.strip()  # spaces around the base64 are dropped, as cn-clip's builder does
                if not INTEGER.fullmatch(raw_id):
                    raise DataError(
                        f"{where}: image id {shown(raw_id.decode(errors='replace'))} is not an integer; "
                        "write the id as a plain decimal integer (no plus sign, spaces or leading zeros)"
                    )
                image_id = int(raw_id)
                if image_id in line_of:
                    raise DataError(
                        f"{where}: image id {image_id} again (first on line {line_of[image_id]}); "
                        "give each image its own id"
                    )
                if not encoded:
                    raise DataError(f"{where}: image {image_id} has no base64 after the TAB; add the encoded image")
                if check_base64:
                    decode_base64(encoded, f"{where}: image {image_id}")
                line_of[image_id] = number
                image_ids.append(image_id)
                offsets.append(offset + len(raw_id) + 1 + len(padded) - len(padded.lstrip()))
                lengths.append(len(encoded))
                offset += len(line)
        if not image_ids:
            raise DataError(f"{path}: no images; the file should hold {TSV_FORMAT}")
        return cls(path, image_ids, offsets, lengths)

    def read(self, ids: list[int]) -> list[Image.Image]:
        rows = [self._row_of(image_id) for image_id in ids]
        with open(self.path, "rb") as handle:
            encoded = []
            for row in rows:
                handle.seek(self._offsets[row])
                encoded.append(handle.read(self._lengths[row]))
        return [
            decode_image(data, f"{self.path}, line {row + 1}: image {self.image_ids[row]}")
            for row, data in zip(rows, encoded, strict=True)
        ]

    def encoded(self) -> Iterator[tuple[bytes, bytes]]:
        """``(str(image_id) as UTF-8, base64 bytes)`` in file order, read one line at a time."""
        with open(self.path, "rb") as handle:
            for row, image_id in enumerate(self.image_ids):
                handle.seek(self._offsets[row])
                yield str(image_id).encode(), handle.read(self._lengths[row])

    def _row_of(self, image_id: int) -> int:
        try:
            return self._row[image_id]
        except KeyError:
            raise DataError(f"{self.path}: no image {image_id!r}; ask for the ids of this split's images") from None
