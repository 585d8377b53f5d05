"""Generation parameters inside image files, as A1111 writes and reads them.

PNG: a tEXt/iTXt chunk "parameters" (plus any other text items). JPEG and WEBP: the EXIF UserComment
tag (0x9286 in the Exif IFD), with the 8-byte "UNICODE\\0" character-code prefix and UTF-16BE text
(piexif's UserComment.dump(encoding="unicode"), as A1111 writes it). piexif writes the EXIF block
because Pillow cannot be told to store UserComment with its required UNDEFINED type (it writes BYTE,
which piexif-based readers such as A1111's reject); Pillow reads it back.
"""
from __future__ import annotations

import io

import piexif
from PIL import Image, PngImagePlugin

EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
# keys of Image.info that are file-format details, not user metadata (A1111's IGNORED_INFO_KEYS)
IGNORED_INFO_KEYS = {
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background", "timestamp",
    "duration", "progressive", "progression", "icc_profile", "chromaticity", "photoshop", "xmp",
}
JPEG_EXIF_LIMIT = 65533  # one APP1 segment


def encode_user_comment(text: str) -> bytes:
    return b"UNICODE\0" + text.encode("utf-16-be")


def decode_user_comment(data: bytes | str) -> str:
    """EXIF UserComment -> text (UNICODE = UTF-16; ASCII; undefined: try UTF-8)."""
    if isinstance(data, str):
        return data
    prefix, body = data[:8], data[8:]
    if prefix == b"UNICODE\0":
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return body.decode("utf-16")
        return body.decode("utf-16-be", errors="ignore")
    if prefix == b"ASCII\0\0\0":
        return body.decode("ascii", errors="ignore")
    if len(data) >= 8 and prefix in (b"\0" * 8, b"JIS\0\0\0\0\0"):
        return body.decode("utf-8", errors="ignore")
    return data.decode("utf-8", errors="ignore")


def exif_bytes(text: str) -> bytes:
    return piexif.dump({"Exif": {piexif.ExifIFD.UserComment: encode_user_comment(text)}})


def png_info(infotext: str | None, items: dict | None = None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    for key, value in (items or {}).items():
        if key != "parameters" and isinstance(value, str):
            info.add_text(key, value)
    return info


def storable_text(text: str) -> str:
    """text that every writer can encode: a lone surrogate (from a broken client or extension)
    becomes U+FFFD instead of failing the save after the whole job ran."""
    return text.encode("utf-8", errors="replace").decode("utf-8") if text else text


def encode_image(image: Image.Image, fmt: str, infotext: str | None = None, items: dict | None = None,
                 quality: int = 80, lossless: bool = False) -> bytes:
    """The file bytes of `image` in fmt ("png", "jpg"/"jpeg", "webp") with the metadata embedded.
    The one image writer of the app: saved files, the gallery's PNGs and the API's base64 PNGs."""
    fmt = fmt.lower()
    infotext = storable_text(infotext) if infotext else infotext
    items = {k: storable_text(v) if isinstance(v, str) else v for k, v in (items or {}).items()}
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, "PNG", pnginfo=png_info(infotext, items))
    elif fmt in ("jpg", "jpeg", "webp"):
        if fmt != "webp" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        kwargs = {"quality": quality}
        if infotext:
            exif = exif_bytes(infotext)
            if fmt != "webp" and len(exif) > JPEG_EXIF_LIMIT:
                raise ValueError(f"the generation parameters ({len(infotext)} characters) are too long for "
                                 "JPEG's EXIF block: save as PNG or WEBP")
            kwargs["exif"] = exif
        if fmt == "webp":
            kwargs["lossless"] = lossless
        image.save(buf, "WEBP" if fmt == "webp" else "JPEG", **kwargs)
    else:
        raise ValueError(f"unsupported image format {fmt!r}: use png, jpg or webp")
    return buf.getvalue()


def _exif_comment(image: Image.Image, raw: bytes | None) -> str | None:
    exif = Image.Exif()
    try:
        if raw is not None:
            exif.load(raw)
        else:
            exif = image.getexif()
        comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not stop reading the image
        return None
    return decode_user_comment(comment) if comment else None


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict]:
    """(infotext or None, other metadata items) of an opened image, for ours and A1111's files."""
    items = dict(image.info or {})
    geninfo = items.pop("parameters", None)
    if "exif" in items:
        comment = _exif_comment(image, items.pop("exif"))
        if comment:
            geninfo = comment
    elif "comment" in items:  # GIF
        comment = items.pop("comment")
        geninfo = comment.decode("utf-8", errors="ignore") if isinstance(comment, bytes) else comment
    for key in IGNORED_INFO_KEYS:
        items.pop(key, None)
    return geninfo, items
