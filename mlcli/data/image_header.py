"""An image file's format and size from its header, in plain Python (no TensorFlow, nothing decoded).

Read for every image before any is decoded, so that a file that is not an image, a truncated one, or
one whose header declares more pixels than mlcli.limits allows (an image bomb) is an error naming it
(exit 3) before a run directory is touched. Formats: PNG, JPEG, BMP, GIF — what tf.io.decode_image reads.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

from mlcli import limits
from mlcli.errors import DataError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_HEAD_BYTES = 1 << 16  # JPEG's frame header may follow EXIF data; 64 KiB covers the usual cases


@dataclass(frozen=True)
class ImageHeader:
    format: str  # png | jpeg | bmp | gif
    width: int
    height: int


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def read_header(path: Path, what: str) -> ImageHeader:
    """The header of `path`; `what` names it in messages (e.g. 'data.train: images/cat/1.png')."""
    try:
        with open(path, "rb") as handle:
            header = _header(handle)
    except OSError as exc:
        raise DataError(f"{what}: cannot be read ({exc.strerror or exc})") from None
    return _checked(header, what)


def header_of_bytes(data: bytes, what: str) -> ImageHeader:
    """The header of an image file's bytes held in memory (mlcli serve's {"b64": ...} values), checked
    as read_header checks a file's: an error naming `what` when it is not an image or declares too
    many pixels."""
    return _checked(_header(io.BytesIO(data)), what)


def _header(handle) -> ImageHeader | None:
    try:
        head = handle.read(_HEAD_BYTES)
        if head[:2] == b"\xff\xd8":
            return _jpeg(handle, head)
        return _other(head)
    except (struct.error, IndexError):
        return None


def _checked(header: ImageHeader | None, what: str) -> ImageHeader:
    if header is None:
        raise DataError(f"{what}: not a readable PNG, JPEG, BMP or GIF image (its header is missing or cut short)",
                        hint="remove the file or replace it with a valid image")
    if header.width < 1 or header.height < 1:
        raise DataError(f"{what}: its header declares {header.width} x {header.height} pixels — not an image")
    limits.check_image_pixels(header.width, header.height, what)
    return header


def _other(head: bytes) -> ImageHeader | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return ImageHeader("png", width, height)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", head[6:10])
        return ImageHeader("gif", width, height)
    if head[:2] == b"BM" and len(head) >= 26:
        size = struct.unpack("<I", head[14:18])[0]
        if size == 12:  # OS/2 BITMAPCOREHEADER
            width, height = struct.unpack("<HH", head[18:22])
        else:
            width, height = struct.unpack("<ii", head[18:26])
        return ImageHeader("bmp", abs(width), abs(height))  # a negative height is a top-down bitmap
    return None


def _jpeg(handle, head: bytes) -> ImageHeader | None:
    """Walks the JPEG markers to the first start-of-frame (SOFn) and reads its size."""
    data = bytearray(head)
    at = 2
    while True:
        while len(data) < at + 9:
            more = handle.read(_HEAD_BYTES)
            if not more:
                return None
            data += more
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return ImageHeader("jpeg", width, height)
        if marker == 0xD9 or length < 2:
            return None
        at += 2 + length
