"""Profile photos: validate untrusted image bytes and re-encode them into pixels we produced.

Role
    ``reencode_avatar`` turns an upload into a square JPEG of fixed size. We never store or
    serve what the client sent: only a freshly encoded image, so polyglots (HTML/SVG/JS that
    is also a "PNG"), EXIF location data, ICC/XMP payloads and decoder exploits aimed at other
    users' browsers do not survive (SECURITY.md §1.4, §1.5).

Invariants
    * Only the PNG, JPEG, GIF and WebP decoders are ever run (``Image.open(formats=...)``),
      and the format is taken from the decoded header, never from the file name or the
      client's Content-Type. (MPO, a multi-frame JPEG some phones produce, is decoded by
      Pillow's JPEG plugin and accepted as JPEG; we keep its first frame.)
    * Limits are checked before pixels are decoded: the byte size first, then the
      dimensions from the header. Pillow's own decompression-bomb guard is a backstop; we
      never change ``Image.MAX_IMAGE_PIXELS`` (process-global) and so are thread-safe.
    * The output is a new RGB image with no metadata at all (no EXIF, ICC, XMP, comments).
    * Every failure is an ``ImageRejected`` whose message can be shown to the user.
    * File names are the caller's job and must be server-generated (SECURITY.md §1.5).
    * CPU-bound and synchronous: call it through ``asyncio.to_thread``.
    * This module imports nothing from quart, aiosqlite or the rest of ``server``.
"""

from __future__ import annotations

import io
import logging

from PIL import Image, ImageOps

__all__ = [
    "AVATAR_CONTENT_TYPE",
    "AVATAR_SIZE",
    "ImageRejected",
    "reencode_avatar",
]

_log = logging.getLogger(__name__)

AVATAR_CONTENT_TYPE = "image/jpeg"
AVATAR_SIZE = 400
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# 24 MP covers what phone cameras save by default (12-24 MP; their 48-200 MP modes are opt-in
# and say "downsize first"); decoded as RGBA that is 96 MB at most, and the picture is
# shrunk right after decoding, so no full-size copy is ever made.
DEFAULT_MAX_PIXELS = 24_000_000

_DECODERS = ("PNG", "JPEG", "GIF", "WEBP")
_ACCEPTED_FORMATS = frozenset({*_DECODERS, "MPO"})
_JPEG_QUALITY = 85
_BACKGROUND = (255, 255, 255)  # transparent areas become white, not black

_NOT_AN_IMAGE = "The file is not a valid image. Please upload a PNG, JPEG, GIF or WebP picture."


class ImageRejected(ValueError):
    """The upload is not an image we accept. ``str(exc)`` is meant for the user."""


def reencode_avatar(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    size: int = AVATAR_SIZE,
) -> bytes:
    """Validate ``data`` and return a ``size``×``size`` JPEG without metadata.

    The picture is turned upright (EXIF orientation), flattened on white, centre-cropped
    to a square and resized. Raises ``ImageRejected`` for anything else.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageRejected(_NOT_AN_IMAGE)
    if len(data) > max_bytes:
        raise ImageRejected(f"The image is too large: at most {_human_bytes(max_bytes)}.")
    if not data:
        raise ImageRejected(_NOT_AN_IMAGE)
    try:
        return _reencode(bytes(data), max_pixels=max_pixels, size=size)
    except ImageRejected:
        raise
    except Exception:
        # Pillow raises many types on hostile input (OSError, SyntaxError, ValueError,
        # EOFError, struct.error, zlib.error, DecompressionBombError, and
        # DecompressionBombWarning when warnings are errors, as under pytest). All of them
        # mean the same thing to the user.
        _log.info("rejected an image upload", exc_info=True)
        raise ImageRejected(_NOT_AN_IMAGE) from None


def _reencode(data: bytes, *, max_pixels: int, size: int) -> bytes:
    with Image.open(io.BytesIO(data), formats=_DECODERS) as image:
        if image.format not in _ACCEPTED_FORMATS:
            raise ImageRejected(_NOT_AN_IMAGE)
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageRejected(_NOT_AN_IMAGE)
        if width * height > max_pixels:
            # Checked on the header, before any pixel is decoded (decompression bombs).
            raise ImageRejected(
                "The image dimensions are too large. Please upload a smaller picture."
            )
        if image.format in ("JPEG", "MPO"):
            # Let libjpeg decode at a reduced scale (still at least size×size): less memory
            # and time for large photos.
            image.draft("RGB", (size, size))
        image.load()
        upright = _upright(_shrunk(image, size))
        rgb = _to_rgb(upright)
        square = ImageOps.fit(rgb, (size, size), method=Image.Resampling.LANCZOS)
    # A brand-new image carries no info dictionary, so nothing from the upload can leak
    # into the file through save() (exif, icc_profile, comments, XMP…).
    clean = Image.new("RGB", (size, size), _BACKGROUND)
    clean.paste(square)
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=_JPEG_QUALITY, optimize=True)
    return out.getvalue()


def _shrunk(image: Image.Image, size: int) -> Image.Image:
    """The decoded picture reduced by a whole factor (a fast box filter) to no less than twice
    the final size on its short side: the orientation, colour conversion and the final
    high-quality resize then work on a small image, never on full-size copies."""
    factor = min(image.size) // (2 * size)
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # modes reduce() does not support (palette, 1-bit) are small anyway
        return image


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is not a reason to reject a photo."""
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception:
        _log.info("ignoring unreadable EXIF orientation", exc_info=True)
        return image
    return image if transposed is None else transposed


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):
        # 16/32-bit greyscale (16-bit PNG): convert("RGB") would clip everything above 255
        # to white, so scale it down to 8 bits first.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def _human_bytes(count: int) -> str:
    if count >= 1024 * 1024 and count % (1024 * 1024) == 0:
        return f"{count // (1024 * 1024)} MB"
    if count >= 1024:
        return f"{count // 1024} KB"
    return f"{count} bytes"
