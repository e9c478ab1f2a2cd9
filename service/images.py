"""Image decoding with limits: every bad image becomes a clear 4xx, never a 5xx."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings

from PIL import Image, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")


class ImageError(ValueError):
    """A client-side image problem; ``status`` is the HTTP code to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def decode_base64(data: str) -> bytes:
    """Base64 (optionally a ``data:image/...;base64,`` URL) to bytes."""
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(422, "image is not valid base64") from None


def content_hash(raw: bytes) -> str:
    """Hex SHA-256 of the raw image bytes (the key of the batcher's detector cache)."""
    return hashlib.sha256(raw).hexdigest()


def open_image(raw: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode, fully, an image within the limits; RGB out.

    Raises:
        ImageError: empty, too large (413), undecodable, truncated or unsupported format (422).
    """
    if not raw:
        raise ImageError(422, "image is empty")
    if len(raw) > max_bytes:
        raise ImageError(413, f"image is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            if image.format not in FORMATS:
                raise ImageError(
                    422, f"unsupported image format {image.format}; use one of {', '.join(FORMATS)}"
                )
            w, h = image.size
            if w * h > max_pixels:
                raise ImageError(413, f"image has {w}x{h} = {w * h} pixels; the limit is {max_pixels}")
            if w < 1 or h < 1:
                raise ImageError(422, "image has no pixels")
            image.load()
            return image.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(413, "image is too large to decode (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageError(422, "image could not be decoded (not an image, or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(422, f"image could not be decoded: {e}") from None
