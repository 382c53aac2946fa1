"""Crafted inputs for tests and benchmarks: decompression bombs (tiny files whose headers declare huge
images) and planted label errors.

The bombs exercise the decode gate (data/io.open_image) and the server's pixel checks without allocating
anything: each is under a hundred bytes, and nothing in pixelseg may decode them. plant_error corrupts a
mask the four ways the label-error audit (quality/audit.py) is benchmarked on.
"""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image


def bomb_png(w: int = 100_000, h: int = 100_000, mode: str = "L") -> bytes:
    """A 1x1 PNG whose IHDR is rewritten to declare w x h, its CRC fixed."""
    buf = io.BytesIO()
    Image.new(mode, (1, 1)).save(buf, format="PNG")
    b = bytearray(buf.getvalue())
    assert b[12:16] == b"IHDR"
    b[16:24] = struct.pack(">II", w, h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def bomb_jpeg(w: int = 65_500, h: int = 65_500) -> bytes:
    """An 8x8 JPEG whose SOF0 header claims w x h."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="JPEG", quality=90)
    b = bytearray(buf.getvalue())
    sof = b.index(b"\xff\xc0")
    b[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(b)


def plant_error(mask: np.ndarray, kind: str, rng: np.random.Generator, num_classes: int, other: np.ndarray | None = None,
                background: int = 0, offset: float = 0.07) -> np.ndarray | None:
    """A copy of ``mask`` with one label error of ``kind`` (for benchmarks and tests): swap = one object
    (connected region of a foreground class) given another foreground class; missing = one object erased
    to background; shifted = the whole mask moved ``offset`` x the short side in a random direction;
    wrong_image = ``other`` (another image's mask). None when the mask has no object to corrupt."""
    if kind == "wrong_image":
        return None if other is None else other.copy()
    if kind == "shifted":
        h, w = mask.shape
        d = offset * min(h, w)
        a = rng.uniform(0, 2 * np.pi)
        dy, dx = round(d * np.sin(a)), round(d * np.cos(a))
        moved = np.full_like(mask, background)
        moved[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        return moved
    if kind not in ("swap", "missing"):
        raise ValueError(f"unknown error kind {kind!r}; one of swap, missing, shifted, wrong_image")
    objects = []
    for c in np.unique(mask):
        if c == background or c >= num_classes:
            continue
        n, lab, stats, _ = cv2.connectedComponentsWithStats((mask == c).astype(np.uint8), connectivity=8)
        objects += [(int(c), lab == i) for i in range(1, n) if stats[i, 4] >= 0.01 * mask.size]
    if not objects:
        return None
    c, sel = objects[int(rng.integers(len(objects)))]
    out = mask.copy()
    if kind == "missing":
        out[sel] = background
    else:
        choices = [k for k in range(num_classes) if k not in (background, c)]
        if not choices:
            return None
        out[sel] = choices[int(rng.integers(len(choices)))]
    return out
