"""What an image a user gave really is, read from its bytes.

A filename, a content type and the width and height Discord reports are all the sender's
claims; only the bytes count. This reads the headers of PNG, JPEG and WebP (no image
library: nothing is decoded), checks that the file is not cut off, and answers with the
type and dimensions, or an InvalidInput whose message says what is wrong in the user's terms.
Every length read from the file is checked before it is used, so no input, however damaged,
raises anything else or loops for long.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from tracking.errors import InvalidInput

PNG, JPEG, WEBP = "image/png", "image/jpeg", "image/webp"
NAMES = {PNG: "PNG", JPEG: "JPEG", WEBP: "WebP"}  # also the order types are listed in

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: empty, so always these 12 bytes
JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
# Frame headers (SOF0-SOF15) carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn have no length
JPEG_MAX_SEGMENTS = 1000  # real files have tens before the image data; more is garbage
_FILL = re.compile(rb"\xff+")  # any number of 0xFF may pad the space before a marker

# Formats recognised only to name them in the refusal ("got a GIF image").
OTHER_FORMATS = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"\x00\x00\x01\x00", "an ICO icon"),
)
HEIF_BRANDS = {b"heic": "a HEIC image", b"heix": "a HEIC image", b"mif1": "a HEIF image", b"avif": "an AVIF image"}

MIB = 1024 * 1024


@dataclass(frozen=True)
class ImageInfo:
    mime_type: str  # one of NAMES
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def size_text(size: int) -> str:
    """20971520 -> '20 MB' (binary megabytes, as Discord counts its upload limits). Rounded
    down, so that "larger than" a limit never names more than the limit."""
    for unit, scale in (("MB", MIB), ("KB", 1024)):
        if size >= scale:
            return f"{size * 10 // scale / 10:g} {unit}"
    return f"{size} bytes"


def too_large(field: str, max_bytes: int) -> InvalidInput:
    """The one refusal for a file over the limit, whoever notices: Discord's word, the download, the bytes."""
    return InvalidInput(field, f"{field} is larger than {size_text(max_bytes)}")


def type_names(mime_types: tuple[str, ...]) -> str:
    """('image/jpeg', 'image/png') -> 'PNG or JPEG'."""
    order = list(NAMES)
    ordered = sorted(mime_types, key=lambda t: order.index(t) if t in order else len(order))
    names = [NAMES.get(t, t) for t in ordered] or ["no image at all"]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_image(
    data: bytes, *, field: str, accepted_types: tuple[str, ...], max_bytes: int, max_pixels: int
) -> ImageInfo:
    """``inspect``, then what this use of the image allows: its size in bytes, its type and its
    number of pixels. The size comes first, so an oversized file is refused without reading it."""
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > max_bytes:
        raise too_large(field, max_bytes)
    info = inspect(data, field=field)
    if info.mime_type not in accepted_types:
        raise InvalidInput(
            field, f"{field} must be {type_names(accepted_types)} for this model (got {NAMES[info.mime_type]})"
        )
    if info.pixels == 0:
        raise InvalidInput(field, f"{field} has no pixels ({info.width}x{info.height})")
    if info.pixels > max_pixels:
        raise InvalidInput(
            field,
            f"{field} is {info.width}x{info.height} pixels ({info.pixels:,}), more than the {max_pixels:,}"
            " pixels accepted: make it smaller and try again",
        )
    return info


def inspect(data: bytes, *, field: str) -> ImageInfo:
    """The type and dimensions of a PNG, JPEG or WebP image; InvalidInput for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInput(field, f"{field} must be a file")
    data = bytes(data)
    if not data:
        raise InvalidInput(field, f"{field} is empty")
    if _starts_like(data, PNG_SIGNATURE):
        return _png(data, field)
    if _starts_like(data, JPEG_START):
        return _jpeg(data, field)
    if _starts_like(data[:4], b"RIFF") and _starts_like(data[8:12], b"WEBP"):
        return _webp(data, field)
    raise InvalidInput(field, f"{field} must be a PNG, JPEG or WebP image (got {_what_else(data)})")


def _starts_like(data: bytes, signature: bytes) -> bool:
    """Whether data begins with signature, or is a beginning of it (a file cut off early)."""
    return data[: len(signature)] == signature[: len(data)]


def _what_else(data: bytes) -> str:
    for magic, name in OTHER_FORMATS:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp":  # ISO media: HEIF pictures, or a video
        return HEIF_BRANDS.get(data[8:12], "a video, not a picture")
    head = data[:1024].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "an SVG drawing"
    return "something that is not an image"


def _header_ends_early(field: str) -> InvalidInput:
    return InvalidInput(field, f"{field} is damaged: its header ends early")


def _cut_off(field: str) -> InvalidInput:
    return InvalidInput(field, f"{field} is damaged: the file ends before the image does (it was cut off)")


def _not_valid(field: str, kind: str) -> InvalidInput:
    return InvalidInput(field, f"{field} is damaged: its {kind} header is not valid")


def _need(data: bytes, end: int, field: str) -> None:
    if len(data) < end:
        raise _header_ends_early(field)


def _u16be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _png(data: bytes, field: str) -> ImageInfo:
    # Signature (8), then IHDR: length 13, type, width, height, 5 more bytes, CRC (33 in all).
    _need(data, 33, field)
    length, kind, fields, crc = data[8:12], data[12:16], data[16:29], data[29:33]
    if length != b"\x00\x00\x00\x0d" or kind != b"IHDR" or zlib.crc32(kind + fields) != int.from_bytes(crc, "big"):
        raise _not_valid(field, "PNG")
    width, height = int.from_bytes(fields[0:4], "big"), int.from_bytes(fields[4:8], "big")
    if width >= 2**31 or height >= 2**31:  # the PNG specification's limit
        raise _not_valid(field, "PNG")
    if data.find(PNG_END, 33) == -1:
        raise _cut_off(field)
    return ImageInfo(PNG, width, height)


def _jpeg(data: bytes, field: str) -> ImageInfo:
    """Walk the segments from SOI: the first frame header (SOFn) has the size, and the image
    data starts after SOS. APPn segments (EXIF, with its own thumbnail JPEG inside; ICC; XMP)
    are skipped by their length, never searched, so nothing inside them is mistaken for ours."""
    _need(data, len(JPEG_START), field)
    at, size = 2, None
    for _ in range(JPEG_MAX_SEGMENTS):
        _need(data, at + 1, field)
        if data[at] != 0xFF:
            raise _not_valid(field, "JPEG")
        at = _FILL.match(data, at).end()
        _need(data, at + 1, field)
        marker = data[at]
        at += 1
        if marker in JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD8, 0xD9):  # a stuffed byte, a second SOI, or the end before any image
            raise _not_valid(field, "JPEG")
        _need(data, at + 2, field)
        length = _u16be(data, at)
        if length < 2:
            raise _not_valid(field, "JPEG")
        if marker in JPEG_FRAMES and size is None:
            if length < 8:
                raise _not_valid(field, "JPEG")
            _need(data, at + 7, field)
            size = (_u16be(data, at + 5), _u16be(data, at + 3))  # precision, height, width
        if marker == 0xDA:  # SOS: entropy-coded data follows, where 0xFF is always escaped
            if size is None:
                raise _not_valid(field, "JPEG")
            _need(data, at + length, field)
            if data.find(JPEG_END, at + length) == -1:
                raise _cut_off(field)
            return ImageInfo(JPEG, *size)
        at += length
    raise _not_valid(field, "JPEG")


def _webp(data: bytes, field: str) -> ImageInfo:
    # RIFF, the size of what follows (little-endian), WEBP, then the first chunk: its kind at 12,
    # its size at 16, its data from 20.
    _need(data, 20, field)
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    kind = data[12:16]
    if kind == b"VP8 ":  # lossy: a key frame's tag (3), start code, 14-bit width and height
        _need(data, 30, field)
        if data[20] & 1 or data[23:26] != b"\x9d\x01\x2a":
            raise _not_valid(field, "WebP")
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
        header_end = 30
    elif kind == b"VP8L":  # lossless: signature 0x2F, then width-1 and height-1 in 14 bits each
        _need(data, 25, field)
        bits = int.from_bytes(data[21:25], "little")
        if data[20] != 0x2F or bits >> 29:  # the version (top 3 bits) must be 0
            raise _not_valid(field, "WebP")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        header_end = 25
    elif kind == b"VP8X":  # extended: flags, 3 reserved bytes, canvas width-1 and height-1 in 24 bits
        _need(data, 30, field)
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        header_end = 30
    else:
        raise _not_valid(field, "WebP")
    if riff_end < header_end:  # the header would lie outside the file it says it is
        raise _not_valid(field, "WebP")
    if len(data) < riff_end:
        raise _cut_off(field)
    return ImageInfo(WEBP, width, height)
