"""Writes the bundled shapes images (mlcli/datasets/shapes/{train,test}/<class>/NNN.png): synthetic,
seeded, small — the image set of the README tour and of configs/shapes_cnn.yaml.

    python -m mlcli.datasets.make_shapes

32x32 RGB PNGs of one filled shape each — a circle, a square or a triangle — of random size, place
and colour on a random darker background, with pixel noise. Written with zlib only (no imaging
library), so the same seed gives the same bytes everywhere.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

SEED = 20261202
SIZE = 32
CLASSES = ("circle", "square", "triangle")
PER_CLASS = {"train": 80, "test": 20}
OUT = Path(__file__).resolve().parent / "shapes"


def write_png(path: Path, pixels: np.ndarray) -> None:
    """uint8 (height, width) or (height, width, 1|3|4) pixels as a PNG file."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + pixels[row].astype(np.uint8).tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9))
                     + chunk(b"IEND", b""))


def draw(shape: str, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """One uint8 (size, size, 3) image of `shape`."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    radius = rng.uniform(0.22, 0.38) * size
    cy, cx = rng.uniform(radius, size - radius, 2)
    if shape == "circle":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    elif shape == "square":
        half = radius * 0.85
        mask = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
    else:  # an upward triangle: below the apex, inside both sloping sides
        top, bottom = cy - radius, cy + radius * 0.8
        width = (yy - top) / (bottom - top) * radius
        mask = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= width)
    background = rng.uniform(0, 90, 3)
    colour = rng.uniform(140, 255, 3)
    image = np.where(mask[:, :, None], colour, background)
    image += rng.normal(0, 8, (size, size, 1))  # grey noise, in steps of 8: noisy, yet a small PNG
    return (np.clip(np.round(image / 8) * 8, 0, 255)).astype(np.uint8)


def write_set(out: Path, per_class: dict[str, int], seed: int = SEED, size: int = SIZE) -> None:
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for shape in CLASSES:
            folder = out / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                write_png(folder / f"{index:03d}.png", draw(shape, rng, size))


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    write_set(OUT, PER_CLASS)


if __name__ == "__main__":
    main()
