"""Image decoding with limits: every bad image becomes a clear 4xx, never a 5xx.

What the model sees is what a viewer shows: EXIF orientation is applied (so boxes come back in
the displayed frame), and transparent pixels are composited onto `ALPHA_BACKGROUND`, a light
grey in the middle of the pale backgrounds the model was trained on (on black, the default of a
plain RGB conversion, the model sees shapes where there are none). Images smaller than
``min_side`` pixels on a side are refused: below it there is nothing the detector can resolve.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
ALPHA_BACKGROUND = (200, 200, 200)  # RGB under transparent pixels


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


def probe_image(raw: bytes, max_bytes: int, max_pixels: int, min_side: int = 1) -> Image.Image:
    """Check an image's size, format and dimensions from its header alone (microseconds) and
    return it opened but not decoded; `finish_image` decodes it (in an inference worker, off the
    event loop).

    Raises:
        ImageError: empty, too large (413), not an image, an unsupported format, or smaller than
            ``min_side`` on a side (422).
    """
    if not raw:
        raise ImageError(422, "image is empty")
    if len(raw) > max_bytes:
        raise ImageError(413, f"image is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(413, "image is too large to decode (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageError(422, "image could not be decoded (not an image, or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(422, f"image could not be decoded: {e}") from None
    if image.format not in FORMATS:
        raise ImageError(422, f"unsupported image format {image.format}; use one of {', '.join(FORMATS)}")
    w, h = image.size
    if w * h > max_pixels:
        raise ImageError(413, f"image has {w}x{h} = {w * h} pixels; the limit is {max_pixels}")
    if min(w, h) < max(1, min_side):
        raise ImageError(422, f"image is {w}x{h} pixels; the minimum is {min_side} on each side")
    return image


def finish_image(image: Image.Image) -> Image.Image:
    """Decode a probed image fully: RGB out, upright, transparency flattened.

    Raises:
        ImageError: truncated or corrupt data (422).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            return _flatten(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(413, "image is too large to decode (decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(422, f"image could not be decoded: {e}") from None


def open_image(raw: bytes, max_bytes: int, max_pixels: int, min_side: int = 1) -> Image.Image:
    """`probe_image`, then `finish_image`: an image within the limits, fully decoded.

    Raises:
        ImageError: as `probe_image` and `finish_image`.
    """
    return finish_image(probe_image(raw, max_bytes, max_pixels, min_side))


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto `ALPHA_BACKGROUND`."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
    flat.alpha_composite(rgba)
    return flat.convert("RGB")
