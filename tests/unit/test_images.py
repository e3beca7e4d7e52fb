"""Tests for server.images: only pixels we produced are ever served (SECURITY.md §1.5)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from server.images import AVATAR_CONTENT_TYPE, ImageRejected, reencode_avatar

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png(width: int, height: int, *, idat: bytes | None = None) -> bytes:
    """A 1-bit greyscale PNG, all black, built without allocating the pixels.

    Rows are compressed one at a time, so a 30000×30000 bomb is ~100 kB on disk and never
    exists in memory on our side.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    if idat is None:
        row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
        compressor = zlib.compressobj(9)
        idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _assert_clean_avatar(data: bytes, size: int = 400) -> Image.Image:
    assert data.startswith(b"\xff\xd8\xff")
    image = _decode(data)
    assert image.format == "JPEG"
    assert image.size == (size, size)
    assert image.mode == "RGB"
    assert len(image.getexif()) == 0
    for key in ("exif", "icc_profile", "xmp", "comment", "photoshop"):
        assert key not in image.info
    return image


def _pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return tuple(int(channel) for channel in value)


def _close(actual: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def test_content_type_constant() -> None:
    assert AVATAR_CONTENT_TYPE == "image/jpeg"


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("PNG", "RGB"),
        ("PNG", "RGBA"),
        ("PNG", "P"),
        ("PNG", "L"),
        ("JPEG", "RGB"),
        ("JPEG", "L"),
        ("JPEG", "CMYK"),
        ("GIF", "P"),
        ("WEBP", "RGB"),
        ("WEBP", "RGBA"),
    ],
)
def test_valid_images_become_square_jpeg_without_metadata(fmt: str, mode: str) -> None:
    source = Image.new("RGB", (640, 480), RED).convert(mode)
    result = reencode_avatar(_encode(source, fmt))
    _assert_clean_avatar(result)


def test_exif_and_icc_are_stripped_and_orientation_applied() -> None:
    # Left half red, right half blue; EXIF orientation 6 means "rotate 90° clockwise to
    # display", which puts red on top. Without it, the centre crop would be red|blue.
    source = Image.new("RGB", (300, 150), RED)
    source.paste(BLUE, (150, 0, 300, 150))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "Spy Camera Inc."  # Make
    exif[0x0131] = "secret-software"  # Software
    icc = b"\x00" * 128  # we never interpret it, only check it is gone
    data = _encode(source, "JPEG", exif=exif, icc_profile=icc, quality=95)
    assert b"Spy Camera" in data

    result = reencode_avatar(data)

    assert b"Spy Camera" not in result and b"secret-software" not in result
    image = _assert_clean_avatar(result)
    assert _close(_pixel(image, (200, 40)), RED)
    assert _close(_pixel(image, (200, 360)), BLUE)


def test_centre_crop_keeps_the_middle() -> None:
    # A wide image: blue bands on the sides, red in the middle square.
    source = Image.new("RGB", (900, 300), BLUE)
    source.paste(RED, (300, 0, 600, 300))
    image = _assert_clean_avatar(reencode_avatar(_encode(source, "PNG")))
    for point in ((10, 200), (200, 200), (390, 200)):
        assert _close(_pixel(image, point), RED)


def test_transparency_is_flattened_on_white() -> None:
    source = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    image = _assert_clean_avatar(reencode_avatar(_encode(source, "PNG")))
    assert _close(_pixel(image, (200, 200)), (255, 255, 255), tolerance=5)


def test_sixteen_bit_greyscale_is_not_clipped_to_white() -> None:
    source = Image.new("I;16", (64, 64), 32768)  # mid grey
    image = _assert_clean_avatar(reencode_avatar(_encode(source, "PNG")))
    red, green, blue = _pixel(image, (200, 200))
    assert 100 < red < 160 and red == green == blue


def test_small_images_are_scaled_up_and_custom_size() -> None:
    _assert_clean_avatar(reencode_avatar(_encode(Image.new("RGB", (1, 1), RED), "PNG")))
    source = _encode(Image.new("RGB", (500, 500), RED), "PNG")
    _assert_clean_avatar(reencode_avatar(source, size=64), size=64)


def test_animated_gif_keeps_first_frame() -> None:
    frames = [Image.new("P", (60, 60), 0), Image.new("P", (60, 60), 1)]
    frames[0].putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    frames[1].putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    image = _assert_clean_avatar(reencode_avatar(data))
    assert _close(_pixel(image, (200, 200)), RED)


def test_polyglot_trailer_is_not_carried_over() -> None:
    payload = b"<html><script>alert(document.cookie)</script></html>"
    data = _encode(Image.new("RGB", (40, 40), RED), "PNG") + payload
    result = reencode_avatar(data)
    _assert_clean_avatar(result)
    assert b"script" not in result


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"just some text, definitely not a picture\n", id="text"),
        pytest.param(b"<html><body><script>alert(1)</script></body></html>", id="html-as-png"),
        pytest.param(
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
            b'onload="alert(1)"><rect width="10" height="10"/></svg>',
            id="svg",
        ),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-signature-only"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 32, id="jpeg-garbage"),
        pytest.param(b"GIF89a" + b"\xff" * 20, id="gif-garbage"),
        pytest.param(b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8, id="webp-garbage"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", id="pdf"),
    ],
)
def test_non_images_are_rejected(data: bytes) -> None:
    with pytest.raises(ImageRejected, match="not a valid image"):
        reencode_avatar(data)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO", "PPM"])
def test_valid_images_in_other_formats_are_rejected(fmt: str) -> None:
    data = _encode(Image.new("RGB", (32, 32), RED), fmt)
    with pytest.raises(ImageRejected):
        reencode_avatar(data)


def test_truncated_png_is_rejected() -> None:
    source = Image.effect_noise((256, 256), 64).convert("RGB")  # incompressible
    data = _encode(source, "PNG")
    with pytest.raises(ImageRejected, match="not a valid image"):
        reencode_avatar(data[: len(data) // 2])


def test_truncated_jpeg_is_rejected() -> None:
    data = _encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG")
    with pytest.raises(ImageRejected):
        reencode_avatar(data[: len(data) // 3])


def test_oversized_upload_is_rejected_before_decoding() -> None:
    # Not an image at all: the size check must come first, so the message is about size.
    data = b"\x00" * (5 * 1024 * 1024 + 1)
    with pytest.raises(ImageRejected, match="too large: at most 5 MB"):
        reencode_avatar(data)
    valid = _encode(Image.new("RGB", (10, 10), RED), "PNG")
    with pytest.raises(ImageRejected, match="too large"):
        reencode_avatar(valid, max_bytes=len(valid) - 1)


def test_decompression_bomb_is_rejected_quickly() -> None:
    bomb = _png(30_000, 30_000)  # 900 megapixels
    assert len(bomb) < 1024 * 1024
    started = time.monotonic()
    with pytest.raises(ImageRejected):
        reencode_avatar(bomb)
    assert time.monotonic() - started < 2


def test_header_claiming_huge_dimensions_is_rejected() -> None:
    lying = _png(30_000, 30_000, idat=zlib.compress(b"\x00\x00"))
    with pytest.raises(ImageRejected):
        reencode_avatar(lying)


def test_dimensions_over_our_limit_but_under_pillows_are_rejected() -> None:
    # 30 MP: above our 24 MP default, below Pillow's own warning threshold (~89 MP).
    data = _png(6_000, 5_000)
    started = time.monotonic()
    with pytest.raises(ImageRejected, match="dimensions are too large"):
        reencode_avatar(data)
    assert time.monotonic() - started < 2
    with pytest.raises(ImageRejected, match="dimensions are too large"):
        reencode_avatar(_encode(Image.new("RGB", (100, 100), RED), "PNG"), max_pixels=9_999)


def test_gif_with_huge_logical_screen_is_rejected() -> None:
    data = bytearray(_encode(Image.new("P", (4, 4), 0), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen width/height
    with pytest.raises(ImageRejected):
        reencode_avatar(bytes(data))


def test_rejection_message_is_user_facing() -> None:
    with pytest.raises(ImageRejected) as caught:
        reencode_avatar(b"nope")
    assert isinstance(caught.value, ValueError)
    assert "Traceback" not in str(caught.value)
    assert "PNG, JPEG, GIF or WebP" in str(caught.value)


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = _encode(Image.new("RGB", (20, 20), RED), "PNG")
    _assert_clean_avatar(reencode_avatar(bytearray(data)))  # type: ignore[arg-type]
    _assert_clean_avatar(reencode_avatar(memoryview(data)))  # type: ignore[arg-type]


_PEAK_SCRIPT = """
import io, resource, sys
from PIL import Image
from server.images import reencode_avatar
side = int(sys.argv[1])
buf = io.BytesIO()
Image.new("RGBA", (side, side), (10, 20, 30, 128)).save(buf, "PNG")
data = buf.getvalue()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reencode_avatar(data)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_large_small_file_costs_one_decoded_picture_of_memory() -> None:
    """A 70 KB PNG can decode to tens of MB: after decoding, the picture is shrunk at once,
    so the peak is that one decoded picture, not several full-size copies (a review measured
    720 MB for one upload before)."""
    side = 3_000  # 9 MP of RGBA: 36 MB decoded
    decoded_kb = side * side * 4 // 1024
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(side)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    grown_kb = int(run.stdout.strip())
    assert grown_kb < 1.5 * decoded_kb, (grown_kb, decoded_kb)
