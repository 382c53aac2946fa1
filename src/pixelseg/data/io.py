"""Reading images and masks with errors a user can act on.

Images: grayscale, RGB, RGBA (8-bit; 16-bit grayscale is scaled to 8-bit) -> HxWxC uint8.
Masks: single-channel 8/16-bit or palette PNGs whose pixel value is the class index -> HxW int array.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pixelseg.errors import PixelsegError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MODE_CHANNELS = {"1": 1, "L": 1, "I;16": 1, "I;16B": 1, "I": 1, "F": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 1, "CMYK": 3}
Image.MAX_IMAGE_PIXELS = None  # users' aerial tiles and slides are legitimately huge; serve/ sets its own limit


def _open(path: Path, what: str, fix: str) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()  # force the decode here, so a truncated file fails now and with its name
        return im
    except FileNotFoundError:
        raise PixelsegError(f"{path}: {what} not found; {fix}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise PixelsegError(f"{path}: {what} cannot be decoded ({e}); re-export it or remove it (with its pair)") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) from the header only, without decoding pixels."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise PixelsegError(f"{path}: not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise PixelsegError(f"{path}: cannot be read ({e}); re-export it or remove it (with its pair)") from None
    return h, w


def image_channels(path: str | Path) -> int:
    try:
        with Image.open(path) as im:
            return MODE_CHANNELS.get(im.mode, 3)
    except FileNotFoundError:
        raise PixelsegError(f"{path}: not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise PixelsegError(f"{path}: cannot be read ({e}); re-export it or remove it (with its pair)") from None


def to_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """Convert HxW / HxWxC uint8 to HxWx`channels`: gray is repeated, RGB->gray uses luminance, alpha is
    dropped or added (opaque). Anything else is an error the caller words."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    c = arr.shape[2]
    if c == channels:
        return arr
    if c == 1:
        if channels == 4:
            return np.concatenate([np.repeat(arr, 3, axis=2), np.full_like(arr, 255)], axis=2)
        return np.repeat(arr, channels, axis=2)
    if c == 4 and channels == 3:
        return arr[:, :, :3]
    if c in (3, 4) and channels == 1:
        rgb = arr[:, :, :3].astype(np.float32)
        return np.round(rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)[:, :, None]
    if c == 3 and channels == 4:
        return np.concatenate([arr, np.full_like(arr[:, :, :1], 255)], axis=2)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """HxWxC uint8. With `channels`, converted to that many channels."""
    path = Path(path)
    im = _open(path, "image", "check the path")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(a.max()), 1.0)
        arr = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif im.mode in ("1", "L"):
        arr = np.asarray(im.convert("L"))
    elif im.mode == "LA":
        arr = np.asarray(im.convert("L"))
    elif im.mode == "RGBA":
        arr = np.asarray(im)
    else:
        arr = np.asarray(im.convert("RGB"))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if channels is not None:
        try:
            arr = to_channels(arr, channels)
        except ValueError:
            raise PixelsegError(f"{path}: has {arr.shape[2]} channels but the model takes {channels}; "
                                "convert the image or train with matching --in-channels") from None
    return np.ascontiguousarray(arr)


def read_mask(path: str | Path, color_channel: int | None = None) -> np.ndarray:
    """HxW class-index array (uint8 or uint16). A 3/4-channel mask is accepted only when its channels are
    equal (a gray mask saved as RGB), or when `color_channel` says which channel holds the index
    (the keras_segmentation convention). Anything else is a color-coded mask, which is not an index."""
    path = Path(path)
    im = _open(path, "mask", "add the mask or remove its image")
    if im.mode == "P":
        return np.asarray(im)  # palette PNG: the stored values are the indices
    if im.mode == "1":
        return np.asarray(im).astype(np.uint8)  # bilevel: stored 0/1 are the indices (convert("L") gives 0/255 = ignore)
    if im.mode == "L":
        return np.asarray(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im)
        if a.min() < 0 or a.max() > 65535:
            raise PixelsegError(f"{path}: mask values outside 0..65535; store class indices")
        return a.astype(np.uint16) if a.dtype != np.uint16 else a
    if im.mode in ("RGB", "RGBA", "LA"):
        a = np.asarray(im)
        if im.mode == "LA":
            return np.ascontiguousarray(a[:, :, 0])
        rgb = a[:, :, :3]
        if color_channel is not None:
            return np.ascontiguousarray(rgb[:, :, color_channel])
        if (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 0] == rgb[:, :, 2]).all():
            return np.ascontiguousarray(rgb[:, :, 0])
        raise PixelsegError(f"{path}: is a color-coded RGB mask, not class indices; save single-channel "
                            "index masks (pixel value = class index) or convert the color masks to indices")
    raise PixelsegError(f"{path}: mask mode {im.mode} is not supported; save it as an 8-bit, 16-bit or palette PNG")
