"""PhotoScenes: a real-image segmentation set built from the photos scikit-image ships, for benchmarks.

    python benchmarks/photo_scenes.py --out /tmp/photoscenes [--train 2000 --val 400 --size 192 --seed 0]

Each scene is a real photo texture (brick, grass, gravel, the moon, a page, the camera man; zoomed, rotated,
colour-jittered) with 2-5 blob-shaped windows, each showing a zoomed, rotated, colour-jittered crop of one of
eight real photos: the class is which photo the window shows (cat, coffee, astronaut, rocket, motorcycle,
coins, stained tissue, deep field). Recognising a window takes knowing what photos look like, as in real data,
not a colour or an edge. Train windows come from the left half of each class photo and val windows from the
right half, so val asks for a view of the object never seen in training. Blob edges (2 px) are ignore (255).
Written in pixelseg's folder format (train/val, images/ + masks/, classes.json); prints a digest of the files.

Needs scikit-image (the test extra installs it); pixelseg's test suite does not use this set.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

CLASSES = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "coins.png", "ihc.png",
           "hubble_deep_field.jpg"]
NAMES = ["background", "cat", "coffee", "astronaut", "rocket", "motorcycle", "coins", "tissue", "deep_field"]
BACKGROUNDS = ["brick.png", "grass.png", "gravel.png", "moon.png", "page.png", "camera.png"]


def photos(names: list[str]) -> list[np.ndarray]:
    import skimage
    folder = Path(skimage.__file__).parent / "data"
    return [np.asarray(Image.open(folder / n).convert("RGB"), np.float32) for n in names]


def view(rng, photo: np.ndarray, size: int, zoom=(0.35, 0.9)) -> np.ndarray:
    """A size x size rotated, zoomed, flipped, colour-jittered view of `photo` (reflected at its borders): the
    photo's short side becomes `zoom` times `size` (a blob window then shows a recognisable part of it)."""
    h, w = photo.shape[:2]
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    s = rng.uniform(*zoom) * size / min(h, w)
    m = cv2.getRotationMatrix2D((cx, cy), rng.uniform(-30, 30), s)
    m[:, 2] += (size / 2 - cx, size / 2 - cy)
    out = cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    grey = out.mean(2, keepdims=True)
    out = grey + (out - grey) * rng.uniform(0.6, 1.4)                 # saturation
    out = (out - 128) * rng.uniform(0.75, 1.25) + 128 + rng.uniform(-25, 25)   # contrast, brightness
    return out * rng.uniform(0.85, 1.15, size=3)                      # colour cast


def blob(rng, size: int) -> np.ndarray:
    """A random smooth blob (0/1) of 20-45 % of the side."""
    r = rng.uniform(0.10, 0.22) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radii = r * rng.uniform(0.6, 1.3, 9)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [cv2.convexHull(pts)], 1)
    return mask


def scene(rng, cls_photos, bg_photos, size: int):
    img = view(rng, bg_photos[rng.integers(len(bg_photos))], size, zoom=(1.0, 2.5))
    lab = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(2, 6)):
        c = int(rng.integers(len(cls_photos)))
        m = blob(rng, size).astype(bool)
        img[m] = view(rng, cls_photos[c], size)[m]
        lab[m] = c + 1
    edges = cv2.morphologyEx(lab, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    lab[edges] = 255
    return np.clip(img, 0, 255).astype(np.uint8), lab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=400)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = Path(a.out)
    cls = photos(CLASSES)
    halves = {"train": [p[:, : p.shape[1] // 2] for p in cls], "val": [p[:, p.shape[1] // 2:] for p in cls]}
    bgs = photos(BACKGROUNDS)
    digest = hashlib.sha256()
    for split, n, seed in (("train", a.train, a.seed), ("val", a.val, a.seed + 10_000)):
        rng = np.random.default_rng(seed)
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, lab = scene(rng, halves[split], bgs, a.size)
            Image.fromarray(img).save(out / split / "images" / f"{i:05d}.png")
            Image.fromarray(lab).save(out / split / "masks" / f"{i:05d}.png")
            digest.update(img.tobytes())
            digest.update(lab.tobytes())
    (out / "classes.json").write_text(json.dumps({"names": NAMES, "ignore_index": 255}, indent=2))
    print(json.dumps({"root": str(out), "classes": len(NAMES), "train": a.train, "val": a.val, "size": a.size,
                      "seed": a.seed, "sha256_16": digest.hexdigest()[:16]}))


if __name__ == "__main__":
    main()
