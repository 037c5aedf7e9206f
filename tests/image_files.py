"""Image files built byte by byte, to the letter of each format, for tests that need real ones
(tests/test_images.py, the Veo fake's media inputs, the bot's /veo image option).

Only headers are exact; PNG's pixels are real too, the others' image data is a stand-in.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(width: int, height: int, *, pixels: bool = True) -> bytes:
    """An 8-bit RGB PNG; with ``pixels``, its rows really are there (black), else an empty IDAT
    (for sizes too large to fill, when only the header is read)."""
    rows = b"".join(b"\x00" + bytes(3 * width) for _ in range(height)) if pixels else b""
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + png_chunk(b"tEXt", b"Comment\x00made for a test")
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def frame_header(width: int, height: int) -> bytes:  # SOF0, baseline, 3 components
    return segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")


# An EXIF block carrying a thumbnail, a whole JPEG of its own (SOI, a 160x120 frame header, EOI):
# a reader that searched the bytes instead of skipping the segment would read the wrong size
# or think the image ended.
THUMBNAIL = b"\xff\xd8" + frame_header(160, 120) + b"\xff\xd9"


def jpeg(width: int, height: int, *, fill: bytes = b"") -> bytes:
    """SOI, APP0 (JFIF), APP1 (EXIF with a thumbnail), DQT, SOF0, DHT, SOS, scan data, EOI.
    ``fill``: extra 0xFF bytes before the frame header, which JPEG allows before any marker."""
    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xE1, b"Exif\x00\x00" + THUMBNAIL)
        + segment(0xDB, b"\x00" + bytes(range(1, 65)))
        + fill
        + frame_header(width, height)
        + segment(0xC4, b"\x00" + bytes([0, 1] + [0] * 14) + b"\x00")
        + segment(0xDA, b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00")
        + b"\x12\xff\x00\x34\xff\xd0\x56"  # scan data: a stuffed 0xFF and a restart marker
        + b"\xff\xd9"
    )


def riff(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"WEBP"
    for kind, data in chunks:
        body += kind + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) % 2)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def vp8(width: int, height: int) -> bytes:
    # A key frame's tag (bit 0 clear), the start code, 14-bit sizes, then (here, dummy) frame data.
    return b"\x50\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(8)


def webp_lossy(width: int, height: int) -> bytes:
    return riff((b"VP8 ", vp8(width, height)))


def webp_lossless(width: int, height: int) -> bytes:
    return riff((b"VP8L", b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14 | 1 << 28) + bytes(5)))


def webp_extended(width: int, height: int) -> bytes:
    canvas = bytes([0x10, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return riff((b"VP8X", canvas), (b"ALPH", b"\x00" * 5), (b"VP8 ", vp8(1, 1)))
