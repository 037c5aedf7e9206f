"""tracking.images: images recognised from their bytes alone, each built here byte by byte."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.fakes.veo_server import tiny_mp4
from tests.hypothesis_profiles import examples
from tests.image_files import (
    PNG_SIGNATURE,
    THUMBNAIL,
    frame_header,
    jpeg,
    png,
    png_chunk,
    riff,
    segment,
    webp_extended,
    webp_lossless,
    webp_lossy,
)
from tracking.errors import InvalidInput
from tracking.images import ImageInfo, check_image, inspect

ROOT = Path(__file__).resolve().parent.parent
PNG, JPEG, WEBP = "image/png", "image/jpeg", "image/webp"
HEADER_ENDS_EARLY = "image is damaged: its header ends early"
CUT_OFF = "image is damaged: the file ends before the image does (it was cut off)"


VALID = {
    "png": (png(3, 2), PNG, 3, 2),
    "jpeg": (jpeg(640, 360), JPEG, 640, 360),
    "jpeg with fill bytes": (jpeg(33, 17, fill=b"\xff\xff\xff"), JPEG, 33, 17),
    "webp lossy": (webp_lossy(320, 240), WEBP, 320, 240),
    "webp lossless": (webp_lossless(16384, 1), WEBP, 16384, 1),
    "webp extended": (webp_extended(1920, 1080), WEBP, 1920, 1080),
}


def refusal(data: bytes, field: str = "image") -> str:
    with pytest.raises(InvalidInput) as raised:
        inspect(data, field=field)
    assert raised.value.field == field
    return str(raised.value)


# --- what is read --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID)
def test_each_format_is_recognised_with_its_size(name):
    data, mime_type, width, height = VALID[name]

    info = inspect(data, field="image")

    assert info == ImageInfo(mime_type, width, height) and info.pixels == width * height


def test_the_exif_thumbnail_is_skipped_not_read():
    data = jpeg(640, 360)
    thumbnail_end = data.index(THUMBNAIL) + len(THUMBNAIL)

    assert inspect(data, field="image") == ImageInfo(JPEG, 640, 360)  # not the thumbnail's 160x120
    assert refusal(data[:thumbnail_end]) == HEADER_ENDS_EARLY  # and its end is not the image's


def test_a_bytearray_or_a_memoryview_reads_as_bytes_do():
    data = png(5, 4)
    expected = ImageInfo(PNG, 5, 4)

    assert inspect(bytearray(data), field="image") == inspect(memoryview(data), field="image") == expected


@pytest.mark.parametrize(
    ("data", "got"),
    [
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "a GIF image"),
        (b"GIF87a" + bytes(20), "a GIF image"),
        (b"BM" + bytes(52), "a BMP image"),
        (b"II*\x00" + bytes(8), "a TIFF image"),
        (b"MM\x00*" + bytes(8), "a TIFF image"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "a HEIC image"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "an AVIF image"),
        (tiny_mp4("a video"), "a video, not a picture"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing"),
        (b"%PDF-1.7\n", "a PDF document"),
        (b"a red fox in the snow", "something that is not an image"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "something that is not an image"),  # RIFF, but sound
        (bytes(100), "something that is not an image"),
    ],
)
def test_other_files_are_refused_naming_what_they_are(data, got):
    assert refusal(data) == f"image must be a PNG, JPEG or WebP image (got {got})"


def test_an_empty_file_or_no_file_is_refused():
    assert refusal(b"") == "image is empty"
    assert refusal("not bytes") == "image must be a file"  # type: ignore[arg-type]


def test_the_field_names_the_input_in_every_message():
    assert refusal(b"GIF89a", field="last_frame").startswith("last_frame must be a PNG, JPEG or WebP image")
    assert refusal(png(3, 2)[:20], field="last_frame") == "last_frame is damaged: its header ends early"


@pytest.mark.parametrize("name", VALID)
def test_every_cut_off_copy_is_refused_as_damaged(name):
    data = VALID[name][0]
    messages = {}
    for length in range(1, len(data)):
        messages.setdefault(refusal(data[:length]), length)

    # Cut inside the header, then anywhere after it: never accepted, never another exception.
    assert set(messages) == {HEADER_ENDS_EARLY, CUT_OFF}
    assert messages[HEADER_ENDS_EARLY] == 1 < messages[CUT_OFF]


def _with(data: bytes, at: int, replacement: bytes) -> bytes:
    return data[:at] + replacement + data[at + len(replacement) :]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (_with(png(3, 2), 29, b"\x00\x00\x00\x00"), "PNG"),  # IHDR's CRC does not match
        (_with(png(3, 2), 12, b"IDAT"), "PNG"),  # the first chunk is not IHDR
        (PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2**31, 1, 8, 2, 0, 0, 0)), "PNG"),
        (b"\xff\xd8" + segment(0xDA, bytes(10)) + b"\xff\xd9", "JPEG"),  # image data before any frame header
        (b"\xff\xd8\xff\xe0\x00\x01" + bytes(20), "JPEG"),  # a segment length below 2
        (b"\xff\xd8\xff\xd9", "JPEG"),  # the end, and no image
        (b"\xff\xd8\xff\xe0\x00\x04ab\x00\x00", "JPEG"),  # no marker where the next one should start
        (b"\xff\xd8" + b"\xff\xd0" * 2000, "JPEG"),  # endless markers: given up on, not walked for ever
        (riff((b"VP8Z", bytes(20))), "WebP"),  # an unknown first chunk
        (_with(webp_lossy(8, 8), 23, b"\x00\x00\x00"), "WebP"),  # no VP8 start code
        (_with(webp_lossy(8, 8), 20, b"\x01"), "WebP"),  # not a key frame
        (_with(webp_lossless(8, 8), 20, b"\x2e"), "WebP"),  # no VP8L signature
        (_with(webp_lossless(8, 8), 24, b"\xe0"), "WebP"),  # a VP8L version other than 0
        (_with(webp_lossy(8, 8), 4, struct.pack("<I", 4)), "WebP"),  # RIFF says the file ends inside the header
    ],
)
def test_damaged_headers_are_refused(data, kind):
    assert refusal(data) == f"image is damaged: its {kind} header is not valid"


# --- what is accepted --------------------------------------------------------------------------

CHECK = {"field": "image", "accepted_types": (JPEG, PNG), "max_bytes": 10_000, "max_pixels": 64 * 64}


def checked(data: bytes, **overrides) -> str:
    with pytest.raises(InvalidInput) as raised:
        check_image(data, **(CHECK | overrides))
    return str(raised.value)


def test_an_accepted_image_passes_up_to_each_limit():
    data = png(64, 64)

    assert check_image(data, **CHECK | {"max_bytes": len(data)}) == ImageInfo(PNG, 64, 64)
    assert check_image(jpeg(64, 64), **CHECK) == ImageInfo(JPEG, 64, 64)


def test_a_type_the_model_does_not_take_names_those_it_does():
    assert checked(webp_lossy(8, 8)) == "image must be PNG or JPEG for this model (got WebP)"
    assert checked(png(8, 8), accepted_types=(JPEG,)) == "image must be JPEG for this model (got PNG)"


def test_a_file_over_the_size_limit_is_refused_before_it_is_read():
    assert checked(png(8, 8), max_bytes=len(png(8, 8)) - 1).startswith("image is larger than ")
    assert checked(b"GIF89a" + bytes(2000), max_bytes=1024) == "image is larger than 1 KB"
    assert checked(bytes(20 * 1024 * 1024 + 1), max_bytes=20 * 1024 * 1024) == "image is larger than 20 MB"


def test_too_many_pixels_are_refused_with_the_size_and_the_limit():
    # A small file can announce a huge picture: the header is what is checked.
    huge = png(100_000, 100_000, pixels=False)

    assert len(huge) < 200
    assert checked(huge, max_pixels=4096 * 4096) == (
        "image is 100000x100000 pixels (10,000,000,000), more than the 16,777,216 pixels accepted:"
        " make it smaller and try again"
    )
    assert checked(png(65, 64)).startswith("image is 65x64 pixels (4,160), more than the 4,096 pixels")


@pytest.mark.parametrize(("width", "height"), [(0, 5), (5, 0), (0, 0)])
def test_an_image_without_pixels_is_refused(width, height):
    assert checked(png(width, height, pixels=False)) == f"image has no pixels ({width}x{height})"
    assert checked(jpeg(width, height)) == f"image has no pixels ({width}x{height})"


def test_the_settings_and_their_documentation():
    assert settings.VEO_IMAGE_MAX_BYTES == 20 * 1024 * 1024
    assert settings.VEO_IMAGE_MAX_PIXELS == 4096 * 4096
    assert settings.VEO_IMAGE_DOWNLOAD_TIMEOUT.total_seconds() == 10
    documented = (ROOT / ".env.example").read_text()
    for name in ("VEO_IMAGE_MAX_BYTES=20971520", "VEO_IMAGE_MAX_PIXELS=16777216", "VEO_IMAGE_DOWNLOAD_TIMEOUT=10s"):
        assert f"# {name}\n" in documented


# --- properties ----------------------------------------------------------------------------------

# Beginnings that lead into each parser, so random tails exercise more than the first check.
BEGINNINGS = [
    b"",
    PNG_SIGNATURE,
    PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR",
    b"\xff\xd8\xff",
    b"\xff\xd8" + segment(0xE0, b"JFIF\x00"),
    b"\xff\xd8" + frame_header(4, 4) + b"\xff\xda",
    b"RIFF\xff\xff\xff\x00WEBPVP8 ",
    b"RIFF\xff\xff\xff\x00WEBPVP8L",
    b"RIFF\xff\xff\xff\x00WEBPVP8X",
]
PROPERTY = hypothesis_settings(max_examples=examples(quick=300), suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.sampled_from(BEGINNINGS), st.binary(max_size=300))
def test_any_bytes_give_an_image_or_invalid_input_and_nothing_else(beginning, tail):
    try:
        info = inspect(beginning + tail, field="image")
    except InvalidInput as refused:
        assert refused.field == "image" and str(refused).startswith("image ")
    else:
        assert info.mime_type in (PNG, JPEG, WEBP) and info.width >= 0 and info.height >= 0


@PROPERTY
@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
def test_a_png_of_any_size_reads_back_exactly(width, height):
    assert inspect(png(width, height, pixels=False), field="image") == ImageInfo(PNG, width, height)


@PROPERTY
@given(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1), st.integers(1, 2**14), st.integers(1, 2**24))
def test_jpeg_and_webp_of_any_size_read_back_exactly(jpeg_side, other_side, lossless_side, extended_side):
    assert inspect(jpeg(jpeg_side, other_side), field="image") == ImageInfo(JPEG, jpeg_side, other_side)
    lossy_side = jpeg_side & 0x3FFF  # VP8 keeps 14 bits; the top two are a scaling hint
    assert inspect(webp_lossy(lossy_side, lossy_side), field="image") == ImageInfo(WEBP, lossy_side, lossy_side)
    assert inspect(webp_lossless(lossless_side, 1), field="image") == ImageInfo(WEBP, lossless_side, 1)
    assert inspect(webp_extended(extended_side, 7), field="image") == ImageInfo(WEBP, extended_side, 7)
