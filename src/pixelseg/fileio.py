"""Atomic file writes: a reader (or a crash) never sees a half-written checkpoint, mask or report."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; what we write should get the usual permissions
_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False):
    """Yield a temporary path in the destination folder; on success it replaces `path` in one rename.

    The temporary file keeps the destination's suffix so libraries that infer the format from the
    name (Pillow, OpenCV, safetensors) behave the same. On error the temporary file is removed and
    whatever was at `path` before is left untouched.

    durable=True (checkpoints) also fsyncs the file before the rename and the folder after it, so the
    new file survives a power cut or a node failure, not only a killed process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)  # after the write: some writers (safetensors) replace the file themselves
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_hash(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks (weights files, downloaded archives)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def user_cache(kind: str) -> Path:
    """pixelseg's cache folder for `kind` ("decoded" images, "onnx" graphs of runs): PIXELSEG_CACHE/<kind>, else
    $XDG_CACHE_HOME/pixelseg/<kind>, else ~/.cache/pixelseg/<kind>. Never inside a run or a dataset: reading a
    run leaves it as it was."""
    env = os.environ.get("PIXELSEG_CACHE")
    root = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pixelseg"
    return root / kind
