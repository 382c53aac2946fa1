"""Big images at their own scale: the training crop sampler and the scaled evaluation input.

Training draws a window in SOURCE pixels (crop / (scale x jitter)), reads only that window (the image may
be a memory-mapped cache, data/cache.py), resizes it to the crop, and pads with the ignore index where the
window runs off the image. Drawing the window first, rather than RandomScale over the whole image and then
RandomCrop (the albumentations chain the small-image presets use), keeps the cost per sample proportional
to the crop, not to a 6000x6000 source. A share `focus` of the crops is centred on a pixel of a class drawn
uniformly among the image's non-dominant classes, so that small rare objects are not starved by crops of
background (class-aware centre sampling, in the spirit of nnU-Net's foreground oversampling).

Evaluation and prediction resize the whole image by the scale, to a multiple of 32 on each side (so every
architecture takes it, and validation batches stack), and bring the logits back to the original size.
"""
from __future__ import annotations

import cv2
import numpy as np
import albumentations as A

MULTIPLE = 32
POSITIONS = 1024      # class positions kept a mask for centring crops
SCANNED = 2048        # masks whose class positions a process remembers


def scaled_size(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of an image resized by `scale`, each side a multiple of 32 (at least 32)."""
    return tuple(max(MULTIPLE, int(round(v * scale / MULTIPLE)) * MULTIPLE) for v in hw[:2])


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area averaging when shrinking (no aliasing of thin structures), bilinear when growing."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
    out = cv2.resize(np.ascontiguousarray(image), (size[1], size[0]),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out[:, :, None] if image.ndim == 3 and out.ndim == 2 else out


class ScaleImage:
    """Evaluation transform of scale mode (albumentations-style call): the image resized by `scale`."""

    def __init__(self, scale: float):
        self.scale = scale

    def __call__(self, image: np.ndarray, **_) -> dict:
        return {"image": resize_image(image, scaled_size(image.shape, self.scale))}


class CropTransform:
    """Training transform of scale mode: a window at scale x jitter, resized to `crop`, padded with the
    ignore index, then `after` (flips, colour: the preset's albumentations ops). Seeded per sample through
    set_random_seed like an A.Compose, so a resumed run replays its crops."""

    def __init__(self, crop: tuple[int, int], scale: float, jitter: tuple[float, float], ignore_index: int,
                 after: A.Compose, focus: float = 0.5):
        self.crop, self.scale, self.jitter = tuple(crop), scale, jitter
        self.ignore_index, self.after, self.focus = ignore_index, after, focus
        self.rng = np.random.default_rng()
        self._scanned: dict[str, tuple] = {}      # memory-mapped mask file -> _class_positions

    def set_random_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.after.set_random_seed(seed)

    def window(self, mask: np.ndarray) -> tuple[int, int, int, int]:
        """(y0, x0, h, w) of the source window; it may run off the image (padded later)."""
        H, W = mask.shape[:2]
        lo, hi = np.log(self.jitter[0]), np.log(self.jitter[1])
        s = self.scale * float(np.exp(self.rng.uniform(lo, hi)))     # log-uniform: as many zooms in as out
        h, w = max(1, round(self.crop[0] / s)), max(1, round(self.crop[1] / s))
        centre = self._focus_pixel(mask) if self.rng.random() < self.focus else None
        if centre is not None:
            y0, x0 = centre[0] - h // 2 + int(self.rng.integers(-h // 4, h // 4 + 1)), \
                centre[1] - w // 2 + int(self.rng.integers(-w // 4, w // 4 + 1))
        else:   # anywhere the window overlaps the image; centred when the image is smaller than it
            y0 = int(self.rng.integers(0, H - h + 1)) if H >= h else -((h - H) // 2)
            x0 = int(self.rng.integers(0, W - w + 1)) if W >= w else -((w - W) // 2)
        return y0, x0, h, w

    def _focus_pixel(self, mask: np.ndarray) -> tuple[int, int] | None:
        step, width, per_class = self._class_positions(mask)
        if not per_class:
            return None
        _, where = per_class[self.rng.integers(len(per_class))]
        y, x = divmod(int(where[self.rng.integers(len(where))]), width)
        return y * step + step // 2, x * step + step // 2

    def _class_positions(self, mask: np.ndarray) -> tuple[int, int, list]:
        """(stride, strided width, [(class, flat positions in the strided view)]) of the non-dominant classes.
        A strided view finds them cheaply on a big mask; a memory-mapped mask (the decode cache: its pixels
        never change) is scanned once and remembered by file, so later crops of it cost no scan. At most
        POSITIONS evenly spaced positions a class are kept: a pure function of the mask, so a resumed run
        draws the same crops whether or not this process had scanned it before."""
        key = getattr(mask, "filename", None)
        if key is not None and key in self._scanned:
            return self._scanned[key]
        step = max(1, int(np.sqrt(mask.size / 250_000)))
        flat = np.asarray(mask[::step, ::step])
        width, flat = flat.shape[1], flat.ravel()
        classes, counts = np.unique(flat[flat != self.ignore_index], return_counts=True)
        rest = np.delete(classes, np.argmax(counts)) if len(classes) >= 2 else classes[:0]  # not the dominant one
        per_class = []
        for c in rest:
            where = np.flatnonzero(flat == c)
            per_class.append((int(c), where[::-(-len(where) // POSITIONS)].astype(np.int32)))
        entry = (step, width, per_class)
        if key is not None:
            if len(self._scanned) >= SCANNED:
                self._scanned.pop(next(iter(self._scanned)))
            self._scanned[key] = entry
        return entry

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict:
        y0, x0, h, w = self.window(mask)
        img = read_window(image, y0, x0, h, w, 0)
        msk = read_window(mask, y0, x0, h, w, self.ignore_index)
        img = resize_image(img, self.crop)
        return self.after(image=img, mask=nearest(msk, self.crop))


def nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize sampling pixel centres (as INTER_NEAREST_EXACT), for any integer dtype."""
    h, w = mask.shape[:2]
    if (h, w) == tuple(size):
        return mask
    ys = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return mask[ys[:, None], xs[None, :]]


def read_window(a: np.ndarray, y0: int, x0: int, h: int, w: int, fill) -> np.ndarray:
    """a[y0:y0+h, x0:x0+w] with `fill` where the window runs off the array (only the window is read)."""
    H, W = a.shape[:2]
    out = np.full((h, w) + a.shape[2:], fill, dtype=a.dtype)
    ya, yb, xa, xb = max(0, y0), min(H, y0 + h), max(0, x0), min(W, x0 + w)
    if ya < yb and xa < xb:
        out[ya - y0:yb - y0, xa - x0:xb - x0] = a[ya:yb, xa:xb]
    return out
