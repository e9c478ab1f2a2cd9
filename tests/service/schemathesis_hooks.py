"""Schemathesis hooks for the contract test: image fields get real images.

JSON Schema can say that ``image`` is base64 (``format: byte``) or a file (``format: binary``),
not that it decodes to a picture; without these strategies every generated image would be noise
and every positive test a 422. Loaded with ``SCHEMATHESIS_HOOKS=tests.service.schemathesis_hooks``.
"""

from __future__ import annotations

import base64
import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image


def _picture(size: tuple[int, int], colour: tuple[int, int, int], fmt: str) -> bytes:
    image = Image.new("RGB", size, (200, 200, 200))
    w, h = size
    image.paste(colour, (w // 4, h // 4, w // 2, h // 2))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


PICTURES = [
    _picture(size, colour, fmt)
    for size in ((16, 16), (64, 48), (128, 128))
    for colour in ((220, 30, 30), (30, 160, 40))
    for fmt in ("PNG", "JPEG")
]

schemathesis.openapi.format("binary", st.sampled_from(PICTURES))
schemathesis.openapi.format("byte", st.sampled_from([base64.b64encode(p).decode() for p in PICTURES]))


@schemathesis.hook
def filter_failure(context: object, failure: object, case: object, response: object) -> bool:
    """Keep every failure but one kind: a multipart field value "violating" its schema accepted.

    A multipart form carries untyped text: a generated object or number in a string field
    arrives as its JSON text (``{}``, ``5``), a valid text, and generated strings pass through the
    form encoding, which can turn a string meant to break the text pattern into one that keeps it
    (seen: a question with a letter in it reported as breaking the pattern). The same rules are
    fuzzed in full through the JSON bodies, whose values arrive exactly as generated.
    """
    message = str(getattr(failure, "message", ""))
    form_value = (
        getattr(case, "media_type", None) == "multipart/form-data"
        and getattr(failure, "code", None) == "ST201"
        and any(kind in message for kind in ("Incorrect type", "violates `type`", "violates `pattern`"))
    )
    return not form_value
