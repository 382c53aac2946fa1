"""Crafted files for tests and benchmarks: decompression bombs, tiny files whose headers declare huge images.

They exercise the decode gate (data/io.open_image) and the server's pixel checks without allocating
anything: each is under a hundred bytes, and nothing in pixelseg may decode them.
"""
from __future__ import annotations

import io
import struct
import zlib

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
