"""Decode a big image once: a memory-mapped .npy per source file, so random crops read only their window.

Decoding a 1536x1536 PNG takes ~50 ms on one core: once per crop it would dominate a CPU training step.
The decoded array is stored under the cache folder (fileio.user_cache: PIXELSEG_CACHE/decoded, else ~/.cache/pixelseg/decoded),
named by a hash of the file's resolved path, modification time, size and what was decoded (image
channels or mask), written atomically (a killed run leaves no half file) and opened with mmap_mode="r":
the page cache shares it between loader workers and a crop touches only its rows. A changed source
gets a new key, so a stale entry is never read. Small images are not cached (decoding them is cheap).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pixelseg.fileio import atomic_path, user_cache

MIN_PIXELS = 1_000_000        # below this, decoding is about as fast as reading the cache


def cache_dir() -> Path:
    return user_cache("decoded")


def cache_key(path: Path, what: str) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{what}"
    return hashlib.sha1(raw.encode()).hexdigest()


def cached(path: str | Path, what: str, decode: Callable[[], np.ndarray]) -> np.ndarray:
    """The decoded array of `path` (memory-mapped when cached); `what` names the decoding (it is part of
    the key: the same file read as RGB or as a mask gives different arrays). A process keeps the entries
    it opened (up to OPEN_MAX), so a later crop of the same file costs one stat, not a hash and a header."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return decode()                  # not a plain file (the decoder gives the user's error)
    memo = (str(path), what)
    if (hit := _open.get(memo)) is not None and hit[0] == (st.st_mtime_ns, st.st_size):
        return hit[1]
    target = cache_dir() / f"{cache_key(path, what)}.npy"
    if target.is_file():
        try:
            return _remember(memo, st, np.load(target, mmap_mode="r"))
        except (OSError, ValueError):    # a damaged entry (disk full once): decode again and replace it
            pass
    arr = decode()
    if arr.size < MIN_PIXELS * (arr.shape[2] if arr.ndim == 3 else 1):
        return arr
    try:
        with atomic_path(target) as tmp:
            np.save(tmp, np.ascontiguousarray(arr))
    except OSError:                      # a read-only or full cache folder costs speed, not the run
        return arr
    return _remember(memo, st, np.load(target, mmap_mode="r"))


OPEN_MAX = 1024
_open: dict[tuple[str, str], tuple[tuple[int, int], np.ndarray]] = {}


def _remember(memo: tuple[str, str], st: os.stat_result, arr: np.ndarray) -> np.ndarray:
    if len(_open) >= OPEN_MAX:
        _open.pop(next(iter(_open)))
    _open[memo] = ((st.st_mtime_ns, st.st_size), arr)
    return arr
