"""How much a file may declare before mlcli reads it: caps for archive members, a compression ratio,
and the memory that data read whole may take.

A small file can declare a huge one: a zip member or a gzip stream that inflates a thousandfold, a
Parquet file of a billion run-length-encoded rows, an .npz whose array headers ask for terabytes.
Every reader compares what a file declares with these limits before it materialises anything, so a
hostile file is an error naming it (exit 3), never an out-of-memory kill.

Each limit can be changed by an environment variable (sizes in bytes, or with K, M, G or T):

    MLCLI_MEMORY_LIMIT           the memory data read whole may take; default: the memory available
                                 when the check is made (MemAvailable, or the container's limit)
    MLCLI_MAX_ARCHIVE_JSON       the largest JSON member read from a .keras archive; default 16M
    MLCLI_MAX_COMPRESSION_RATIO  how many times its stored size an archive member may inflate; default 100
    MLCLI_MAX_IMAGE_PIXELS       the most pixels an image's header may declare (width x height); default 100M

An image file is a small file that can declare a huge one too (an "image bomb": a few KB of PNG
declaring 50,000 x 50,000 pixels): its header is read before it is decoded (mlcli.data.image_header).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mlcli.errors import DataError, UsageError

MEMORY_LIMIT_VAR = "MLCLI_MEMORY_LIMIT"
ARCHIVE_JSON_VAR = "MLCLI_MAX_ARCHIVE_JSON"
RATIO_VAR = "MLCLI_MAX_COMPRESSION_RATIO"
IMAGE_PIXELS_VAR = "MLCLI_MAX_IMAGE_PIXELS"
# A 100-megapixel photo is about the largest a camera makes; decoded as RGB float32 it takes 1.2 GB.
IMAGE_PIXELS = 100_000_000

ARCHIVE_JSON_BYTES = 16 << 20  # config.json of a large model is a few hundred KB
# Keras writes its archive members stored (1:1) and deflate cannot exceed ~1032:1: a member that
# inflates more than 100 times is a bomb, not a model. Members below the floor may compress any amount.
COMPRESSION_RATIO = 100
RATIO_FLOOR_BYTES = 16 << 20

READ_WHOLE_HINT = (f"stream it from disk (data.stream: true) where the command can, or split it; if the machine "
                   f"has the memory, set {MEMORY_LIMIT_VAR} to what mlcli may use")

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class Declared:
    """What a file declares: its data's size once decompressed, and the memory reading it whole takes."""

    data: int
    need: int
    exact: bool = True  # False: counted while decompressing, stopped after `data` bytes (there is more)

    def __add__(self, other: Declared) -> Declared:
        return Declared(self.data + other.data, self.need + other.need, self.exact and other.exact)

    def text(self) -> str:
        return size_text(self.data) if self.exact else f"more than {size_text(self.data)}"


def size_text(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def parse_size(text: str, variable: str) -> int:
    """'512M' -> 536870912; anything else than bytes or a number with K, M, G, T is exit 2."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"{variable}={text!r}: not a size — expected bytes, or a number with K, M, G or T (e.g. 4G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def archive_json_limit() -> int:
    value = os.environ.get(ARCHIVE_JSON_VAR)
    return parse_size(value, ARCHIVE_JSON_VAR) if value else ARCHIVE_JSON_BYTES


def image_pixels_limit() -> int:
    value = os.environ.get(IMAGE_PIXELS_VAR)
    return parse_size(value, IMAGE_PIXELS_VAR) if value else IMAGE_PIXELS


def check_image_pixels(width: int, height: int, what: str) -> None:
    """Exit 3 when an image's header declares more pixels than the limit (before it is decoded)."""
    limit = image_pixels_limit()
    if width * height > limit:
        raise DataError(f"{what}: declares {width} x {height} = {width * height:,} pixels, more than the limit of "
                        f"{limit:,} — it is not decoded (a file this small declaring that much is an image bomb, "
                        "or the image needs shrinking first)",
                        hint=f"resize the image, or set {IMAGE_PIXELS_VAR} to a larger number of pixels")


def compression_ratio_limit() -> float:
    value = os.environ.get(RATIO_VAR)
    if not value:
        return COMPRESSION_RATIO
    try:
        ratio = float(value)
    except ValueError:
        ratio = 0.0
    if not ratio >= 1:
        raise UsageError(f"{RATIO_VAR}={value!r}: not a ratio — expected a number of at least 1 (e.g. 1000)")
    return ratio


def memory_limit() -> tuple[int | None, str]:
    """(bytes that data read whole may take, where that figure comes from); None: unknown (no check)."""
    value = os.environ.get(MEMORY_LIMIT_VAR)
    if value:
        return parse_size(value, MEMORY_LIMIT_VAR), MEMORY_LIMIT_VAR
    return available_memory(), "available"


def available_memory() -> int | None:
    """Memory that can be used now: the kernel's MemAvailable, or less when a cgroup (a container)
    limits this process; None where neither can be read (not Linux)."""
    figures = [_meminfo_available(), _cgroup_headroom()]
    known = [f for f in figures if f is not None]
    return min(known) if known else None


def fits(declared: Declared, what: str, hint: str = READ_WHOLE_HINT) -> None:
    """Exit 3 when reading `what` whole would need more memory than there is (or than the limit)."""
    limit, source = memory_limit()
    if limit is None or declared.need <= limit:
        return
    raise DataError(f"{what}: holds {declared.text()} of data; reading it whole needs about "
                    f"{size_text(declared.need)}, more than {memory_text(limit, source)}", hint=hint)


def memory_text(limit: int, source: str) -> str:
    """'1.0 GiB of memory available' or '1.0 GiB (MLCLI_MEMORY_LIMIT)', for messages."""
    return f"{size_text(limit)} of memory available" if source == "available" else f"{size_text(limit)} ({source})"


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def _cgroup_headroom() -> int | None:
    """A cgroup's memory limit minus its usage (cgroup v2, then v1); None when unlimited or unknown."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # v1 says "unlimited" with a huge number
            return max(int(limit) - usage, 0)
        return None
    return None
