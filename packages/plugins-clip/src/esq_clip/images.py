"""Encoded images as Chinese-CLIP stores them: base64 of an image file (JPEG, PNG...), decoded
strictly and converted to RGB."""

from __future__ import annotations

import base64
import binascii
import io
from typing import TYPE_CHECKING

from esq import DataError

if TYPE_CHECKING:
    from PIL import Image

_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def decode_base64(encoded: bytes, what: str) -> bytes:
    """Standard or URL-safe base64 (cn-clip reads with ``urlsafe_b64decode``, which takes both),
    strictly: a character outside the alphabet or wrong padding is an error, not skipped.

    >>> decode_base64(b"aW1hZ2U-", "line 1"), decode_base64(b"aW1hZ2U+", "line 1")
    (b'image>', b'image>')
    >>> decode_base64(b"aW1h!", "line 1")
    Traceback (most recent call last):
    ...
    esq.errors.DataError: line 1 is not valid base64 (...); encode the image file with base64.b64encode
    """
    try:
        return base64.b64decode(encoded.translate(_URLSAFE_TO_STANDARD), validate=True)
    except (binascii.Error, ValueError) as error:
        raise DataError(f"{what} is not valid base64 ({error}); encode the image file with base64.b64encode") from None


def decode_image(encoded: bytes | None, what: str) -> Image.Image:
    from PIL import Image

    if encoded is None:
        raise DataError(f"{what} is missing; rebuild the LMDB with `esq clip build-lmdb`")
    data = decode_base64(encoded, what)
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        reason = "not a known image format" if isinstance(error, Image.UnidentifiedImageError) else error
        raise DataError(
            f"{what} does not decode as an image ({reason}); store an encoded image file (JPEG, PNG, ...)"
        ) from None
