"""The built-in dataset: procedurally generated scenes of overlapping shapes on textured backgrounds.

Why it looks the way it does: a model must need shape and context to solve it, not a color threshold.
So every object class draws its color from the same distribution, backgrounds are textured and
varied (noise, stripes, checkers, gradients, distractor lines), lighting changes across each image,
and objects overlap and partly hide each other. Labels are exact: each object's pixels come from one
binary mask drawn with cv2 (LINE_8, no anti-aliasing) and that same mask paints both the image and the
label, so there is no ignore band and no label noise.

Determinism: sample i of split s is drawn from ``SeedSequence([seed, s, i])``, so the files depend on
the seed and the sizes only, never on how many workers wrote them.

Folder written by :func:`generate` (the "folder" format the rest of pixelseg reads)::

    OUT/classes.json                  {"names": [...], "colors": [[r,g,b],...], "ignore_index": 255}
    OUT/train/images/train_00000.png  RGB
    OUT/train/masks/train_00000.png   mode "L", pixel = class index
    OUT/val/images/val_00000.png ...
"""
from __future__ import annotations

import colorsys
import multiprocessing as mp
import re
import time
from pathlib import Path

import cv2
import numpy as np

from pixelseg.data.classes import DEFAULT_IGNORE_INDEX, ClassTable
from pixelseg.errors import PixelsegError
from pixelseg.fileio import atomic_path, write_json

CLASS_NAMES = ("background", "circle", "triangle", "rectangle", "star", "cross")
CLASS_COLORS = (
    (0, 0, 0),
    (230, 25, 75),     # circle: red
    (60, 180, 75),     # triangle: green
    (255, 225, 25),    # rectangle: yellow
    (0, 130, 200),     # star: blue
    (245, 130, 48),    # cross: orange
)
SPLITS = (("train", 0), ("val", 1))  # name, split id used in the seed sequence

_SHIFT = 4                      # cv2 fixed-point bits: vertices at 1/16 pixel
_SCALE = 1 << _SHIFT
_MIN_SIZE = 16                  # smallest scene side that still holds a recognizable shape
_RADIUS_RANGE = (0.15, 0.32)    # object radius as a fraction of the short side
_MIN_VISIBLE = 0.5              # every earlier object keeps at least this share of its pixels
# per-class radius factors that give every shape about the same mean area (~2.2 r^2), so that
# neither pixel counts nor object size hint at the class
_RADIUS_FACTOR = {"circle": 0.85, "triangle": 1.4, "rectangle": 1.0, "star": 1.25, "cross": 1.0}
_PLACE_TRIES = 25
_COLOR_TRIES = 12
_MIN_CONTRAST = 0.35            # RGB distance in [0, 1] units between an object and what it sits on


def class_table() -> ClassTable:
    return ClassTable(CLASS_NAMES, CLASS_COLORS, ignore_index=DEFAULT_IGNORE_INDEX)


def _check_args(size, min_objects, max_objects) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise PixelsegError(f"synthetic size must be two integers (height, width), got {size!r}") from None
    if h < _MIN_SIZE or w < _MIN_SIZE:
        raise PixelsegError(f"synthetic size {h}x{w} is too small; use at least {_MIN_SIZE}x{_MIN_SIZE}")
    if not (0 <= min_objects <= max_objects):
        raise PixelsegError(f"synthetic object counts need 0 <= min_objects <= max_objects, "
                            f"got min_objects={min_objects}, max_objects={max_objects}")
    return h, w


# ---------------------------------------------------------------- background

def _hsv(rng: np.random.Generator, s=(0.0, 1.0), v=(0.0, 1.0)) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v)), np.float32)


def _smooth_noise(rng, h, w, channels=1, cells=(2, 7)) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a small random grid upsampled with bicubic interpolation."""
    gh, gw = int(rng.integers(*cells)), int(rng.integers(*cells))
    grid = rng.random((gh, gw, channels), dtype=np.float32)
    up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(up.reshape(h, w, channels), 0.0, 1.0)


def _rotated_coords(rng, yy, xx):
    theta = rng.uniform(0, np.pi)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    return xx * c + yy * s, -xx * s + yy * c


def _background(rng, h, w) -> np.ndarray:
    """HxWx3 float32 in [0, 1]: two random colors blended by a mix of textures, plus color noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    layers, weights = [_smooth_noise(rng, h, w)[..., 0]], [rng.uniform(0.5, 1.5)]
    if rng.random() < 0.55:  # stripes, sine or square, at a random angle and period
        u, _ = _rotated_coords(rng, yy, xx)
        wave = np.sin(2 * np.pi * u / rng.uniform(10.0, 24.0) + rng.uniform(0, 2 * np.pi))
        layers.append(0.5 + 0.5 * (np.sign(wave) if rng.random() < 0.4 else wave))
        weights.append(rng.uniform(0.3, 1.5))
    if rng.random() < 0.3:  # checkerboard
        u, v = _rotated_coords(rng, yy, xx)
        p = rng.uniform(12.0, 28.0)
        layers.append(((np.floor(u / p) + np.floor(v / p)) % 2).astype(np.float32))
        weights.append(rng.uniform(0.3, 1.2))
    if rng.random() < 0.6:  # linear gradient
        u, _ = _rotated_coords(rng, yy, xx)
        layers.append((u - u.min()) / max(float(np.ptp(u)), 1.0))
        weights.append(rng.uniform(0.3, 1.5))
    wsum = float(sum(weights))
    t = sum(wt * layer for wt, layer in zip(weights, layers)) / wsum
    c1, c2 = _hsv(rng), _hsv(rng)
    bg = c1 + (c2 - c1) * t[..., None]
    bg += (_smooth_noise(rng, h, w, 3, cells=(3, 12)) - 0.5) * rng.uniform(0.0, 0.3)
    bg *= 1.0 + rng.normal(0.0, rng.uniform(0.0, 0.06), (h, w, 1)).astype(np.float32)  # fine grain
    for _ in range(int(rng.integers(0, 4))):  # distractor strokes: edges that belong to no object
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(bg, p1, p2, tuple(float(v) for v in _hsv(rng)), int(rng.integers(1, 4)), cv2.LINE_AA)
    return np.clip(bg, 0.0, 1.0)


# ---------------------------------------------------------------- shapes

def _rot(points: np.ndarray, theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return points @ np.array([[c, s], [-s, c]])


def _polygon(cls: int, r: float, rng) -> np.ndarray | None:
    """Vertices (N x 2, around the origin, unrotated) for polygon classes; None for the circle."""
    name = CLASS_NAMES[cls]
    if name == "circle":
        return None
    if name == "triangle":
        ang = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.35, 0.35, 3)
        rad = r * rng.uniform(0.8, 1.0, 3)
        return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    if name == "rectangle":
        a, b = r, r * rng.uniform(0.35, 1.0)
        return np.array([[-a, -b], [a, -b], [a, b], [-a, b]]) * 0.9
    if name == "star":
        ang = np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.38, 0.5))
        return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    if name == "cross":
        t = r * rng.uniform(0.22, 0.4)
        return np.array([[t, t], [r, t], [r, -t], [t, -t], [t, -r], [-t, -r],
                         [-t, -t], [-r, -t], [-r, t], [-t, t], [-t, r], [t, r]])
    raise AssertionError(name)


def _shape_mask(cls: int, h: int, w: int, rng) -> np.ndarray:
    """A binary HxW uint8 mask of one object at a random place, size and rotation."""
    short = min(h, w)
    r = rng.uniform(*_RADIUS_RANGE) * short * _RADIUS_FACTOR[CLASS_NAMES[cls]]
    # keep the center far enough inside that most of the object is in the frame
    cx = rng.uniform(min(0.6 * r, w / 2), max(w - 0.6 * r, w / 2))
    cy = rng.uniform(min(0.6 * r, h / 2), max(h - 0.6 * r, h / 2))
    om = np.zeros((h, w), np.uint8)
    pts = _polygon(cls, r, rng)
    if pts is None:
        cv2.circle(om, (round(cx * _SCALE), round(cy * _SCALE)), round(r * _SCALE), 1, -1, cv2.LINE_8, _SHIFT)
    else:
        pts = _rot(pts, rng.uniform(0, 2 * np.pi)) + (cx, cy)
        cv2.fillPoly(om, [np.round(pts * _SCALE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return om


def _object_fill(rng, color: np.ndarray, box, cls: int = 1) -> np.ndarray:
    """Fill for the object's bounding box: its color, shaded, carrying its class's surface pattern.

    Each shape class has its own kind of surface (rings, stripes, checks, dots, speckle) at a random
    scale, angle and contrast, in a random color. Backgrounds carry stripes and checks too, so a local
    texture filter alone mislabels them: the outline and the context decide. The pattern is what lets a
    small CNN learn the classes within minutes on a CPU; shapes alone need far more training steps.
    """
    y0, y1, x0, x1 = box
    bh, bw = y1 - y0, x1 - x0
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    un = (u - u.mean()) / max(float(np.ptp(u)), 1.0)  # about -0.5..0.5 across the object
    shade = 1.0 + rng.uniform(0.0, 0.35) * un
    name = CLASS_NAMES[cls]
    period = rng.uniform(3.5, 7.0)
    if name == "triangle":      # stripes
        pattern = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif name == "rectangle":   # checks
        pattern = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif name == "star":        # dots on a grid
        pattern = (((u % period) - period / 2) ** 2 + ((v % period) - period / 2) ** 2 < (period * 0.3) ** 2).astype(np.float32)
    elif name == "cross":       # speckle
        pattern = (rng.random((bh, bw)) < 0.5).astype(np.float32)
    else:                       # circle: concentric rings
        r = np.hypot(xx - bw / 2, yy - bh / 2)
        pattern = (np.sin(2 * np.pi * r / period) > 0).astype(np.float32)
    contrast = rng.uniform(0.35, 0.6)
    shade = shade * (1.0 - contrast * (pattern - pattern.mean()))  # mean-neutral: brightness says nothing either
    if rng.random() < 0.35:
        shade = shade + (_smooth_noise(rng, bh, bw, cells=(2, 5))[..., 0] - 0.5) * rng.uniform(0.05, 0.2)
    return np.clip(color[None, None, :] * shade[..., None], 0.0, 1.0)


def _pick_color(rng, canvas_pixels: np.ndarray, neighbor_colors: list[np.ndarray]) -> np.ndarray:
    """A color from one class-independent distribution, redrawn until it stands out from what it covers."""
    local = canvas_pixels.mean(0)
    best, best_score = None, -1.0
    for _ in range(_COLOR_TRIES):
        c = _hsv(rng, s=(0.2, 1.0), v=(0.2, 1.0))
        score = min([float(np.linalg.norm(c - local))] + [float(np.linalg.norm(c - n)) for n in neighbor_colors])
        if score > best_score:
            best, best_score = c, score
        if score >= _MIN_CONTRAST:
            break
    return best


# ---------------------------------------------------------------- scenes

def make_scene(rng: np.random.Generator, size: tuple[int, int], min_objects: int = 2,
               max_objects: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (img HxWx3 uint8 RGB, mask HxW uint8 class indices 0..5). `size` is (H, W).

    Objects are drawn in order (later ones on top); a placement that would leave an earlier object with
    less than half of its pixels visible is redrawn, and after several failures the object is dropped,
    so a crowded small scene can hold fewer than `min_objects`.
    """
    img, mask, _, _ = _compose(rng, size, min_objects, max_objects)
    return img, mask


def _compose(rng, size, min_objects, max_objects):
    """make_scene plus the instance map (object k owns pixels == k) and each object's drawn area."""
    h, w = _check_args(size, min_objects, max_objects)
    canvas = _background(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    inst = np.zeros((h, w), np.int32)           # which object owns each pixel (0 = background)
    areas, colors = [0], [None]                 # per object: pixels when drawn, fill color
    n = int(rng.integers(min_objects, max_objects + 1))
    min_area = max(12, int(0.002 * h * w))
    for _ in range(n):
        cls = int(rng.integers(1, len(CLASS_NAMES)))  # class first, then geometry: retries keep classes uniform
        for _ in range(_PLACE_TRIES):
            om = _shape_mask(cls, h, w, rng)
            ys, xs = np.nonzero(om)
            if len(ys) < min_area:
                continue
            covered = np.bincount(inst[ys, xs], minlength=len(areas))
            visible = np.bincount(inst.ravel(), minlength=len(areas))
            if np.any(visible[1:] - covered[1:] < _MIN_VISIBLE * np.asarray(areas[1:])):
                continue
            break
        else:
            continue
        k = len(areas)
        neighbors = [colors[j] for j in np.nonzero(covered[1:])[0] + 1]
        color = _pick_color(rng, canvas[ys, xs], neighbors)
        box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
        fill = _object_fill(rng, color, box, cls)
        canvas[ys, xs] = fill[ys - box[0], xs - box[2]]
        mask[ys, xs] = cls
        inst[ys, xs] = k
        areas.append(len(ys))
        colors.append(color)

    # lighting: a brightness ramp in a random direction, then global brightness/contrast, then sensor noise
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    u = (xx - w / 2) * np.cos(theta) + (yy - h / 2) * np.sin(theta)
    u /= max(h, w)
    img = canvas * (1.0 + rng.uniform(0.0, 0.7) * u)[..., None]
    img = (img - 0.5) * rng.uniform(0.7, 1.2) + 0.5 + rng.uniform(-0.12, 0.12)
    img += rng.normal(0.0, rng.uniform(0.005, 0.05), img.shape).astype(np.float32)
    img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return img, mask, inst, areas


# ---------------------------------------------------------------- dataset on disk

def _stem(split: str, i: int) -> str:
    return f"{split}_{i:05d}"


def _render(job) -> np.ndarray:
    """Make sample i of a split, write its image and mask, return its per-class pixel counts."""
    out, split, split_id, i, size, seed, min_objects, max_objects = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, i]))
    img, mask = make_scene(rng, size, min_objects, max_objects)
    stem = _stem(split, i)
    for sub, arr in (("images", cv2.cvtColor(img, cv2.COLOR_RGB2BGR)), ("masks", mask)):
        with atomic_path(Path(out) / split / sub / f"{stem}.png") as tmp:
            if not cv2.imwrite(str(tmp), arr):
                raise PixelsegError(f"{tmp}: could not write the PNG; check free space and permissions")
    return np.bincount(mask.ravel(), minlength=len(CLASS_NAMES))


def _remove_stale(out: Path, split: str, n: int) -> None:
    """Delete synthetic files of this split beyond index n-1, left by an earlier, larger run."""
    pat = re.compile(rf"^{split}_(\d{{5,}})\.png$")
    for sub in ("images", "masks"):
        d = out / split / sub
        if d.is_dir():
            for p in d.iterdir():
                m = pat.match(p.name)
                if m and int(m.group(1)) >= n:
                    p.unlink()


def generate(out, n_train: int = 400, n_val: int = 100, size: tuple[int, int] = (128, 128), seed: int = 0,
             workers: int = 1, min_objects: int = 2, max_objects: int = 5) -> dict:
    """Write the synthetic dataset in the folder format under `out` and return a summary.

    Summary: {"out", "size": [H, W], "seed", "counts": {split: n},
    "class_fraction": {split: {class name: share of pixels}}, "seconds"}.
    Files of an earlier run into the same folder are overwritten; its extra samples are removed.
    """
    t0 = time.perf_counter()
    h, w = _check_args(size, min_objects, max_objects)
    if n_train < 0 or n_val < 0:
        raise PixelsegError(f"synthetic sample counts must be >= 0, got n_train={n_train}, n_val={n_val}")
    if seed < 0:
        raise PixelsegError(f"synthetic seed must be >= 0, got {seed}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PixelsegError(f"{out}: exists and is not a folder; choose another output path")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "classes.json", class_table().to_dict())
    counts = {"train": int(n_train), "val": int(n_val)}
    jobs = {split: [(str(out), split, sid, i, (h, w), int(seed), int(min_objects), int(max_objects))
                    for i in range(counts[split])] for split, sid in SPLITS}
    for split, _ in SPLITS:
        for sub in ("images", "masks"):
            (out / split / sub).mkdir(parents=True, exist_ok=True)
        _remove_stale(out, split, counts[split])

    pixels = {}
    workers = max(1, int(workers))
    if workers == 1:
        for split, _ in SPLITS:
            pixels[split] = sum((_render(j) for j in jobs[split]), np.zeros(len(CLASS_NAMES), np.int64))
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            for split, _ in SPLITS:
                pixels[split] = sum(pool.imap(_render, jobs[split], chunksize=8),
                                    np.zeros(len(CLASS_NAMES), np.int64))
    fractions = {split: {name: (float(c) / max(int(p.sum()), 1)) for name, c in zip(CLASS_NAMES, p)}
                 for split, p in pixels.items()}
    return {"out": str(out), "size": [h, w], "seed": int(seed), "counts": counts,
            "class_fraction": fractions, "seconds": round(time.perf_counter() - t0, 3)}
