"""Images in and out of JSON: base64 PNGs (with the infotext chunk) and careful decoding.

Decoding accepts raw base64 or a `data:image/...;base64,` prefix, as A1111 does. Every failure is a
422 naming the request field: not base64, not an image, damaged, or larger than the img_max_size
setting (checked from the header, before any pixel is decoded).

Image URLs are refused: fetching them would let a request make this server reach addresses only it
can see (the cloud metadata endpoint, services on localhost, the LAN). Clients send base64.
"""
from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

from modules import image_metadata
from webui.api.errors import ApiError, field_error

_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def max_encoded_length(max_side: int) -> int:
    """Generous bound for the base64 text of an image whose sides are at most max_side (RGBA, no
    compression, plus headers): anything longer cannot be a legal image and is refused unread."""
    return (max_side * max_side * 4 + (1 << 20)) * 4 // 3


def decode_image(text: object, field: str | tuple, max_side: int) -> Image.Image:
    """base64 (or data URL) -> a loaded PIL image; raises a 422 naming `field`, or 400 for a URL."""
    if not isinstance(text, str) or not text.strip():
        raise field_error(field, "expected a base64-encoded image, got an empty value")
    text = text.strip()
    if _URL.match(text):
        raise ApiError(400, f"{_name(field)}: image URLs are not accepted (a server fetching URLs can be "
                            "made to reach private addresses); send the image itself as base64")
    if text[:5].lower() == "data:":
        match = _DATA_URL.match(text)
        if not match:
            raise field_error(field, "a data URL must look like data:image/png;base64,<data>")
        text = text[match.end():]
    if len(text) > max_encoded_length(max_side):
        raise field_error(field, f"the image data is too large for images of at most {max_side} pixels a side "
                                 "(setting img_max_size)")
    try:
        raw = base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise field_error(field, "not valid base64 (send the file's bytes base64-encoded)") from None
    return open_image_bytes(raw, field, max_side)


def open_image_bytes(raw: bytes, field: str | tuple, max_side: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            image = Image.open(io.BytesIO(raw))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        raise field_error(field, "not an image PIL can read (send PNG, JPEG or WEBP)") from None
    width, height = image.size
    if width < 1 or height < 1 or max(width, height) > max_side:
        raise field_error(field, f"the image is {width}x{height} pixels; the largest side allowed is {max_side} "
                                 "(setting img_max_size)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError):
        raise field_error(field, "the image data is damaged or truncated") from None
    return image


def encode_png(image: Image.Image, infotext: str | None = None) -> str:
    """A PIL image -> base64 PNG (no `data:` prefix) with the `parameters` text chunk."""
    infotext = infotext if infotext is not None else image.info.get("parameters")
    if image.mode not in ("RGB", "RGBA", "L", "LA", "I", "P", "1"):
        image = image.convert("RGB")
    return base64.b64encode(image_metadata.encode_image(image, "png", infotext)).decode("ascii")


def _name(field: str | tuple) -> str:
    return field if isinstance(field, str) else ".".join(str(f) for f in field)
