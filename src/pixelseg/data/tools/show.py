"""`pixelseg data show`: a grid of images with their masks overlaid and a legend, optionally after the
training augmentation, so a user sees exactly what the model will be trained on (a wrong label
convention, a shifted mask or a too-strong augmentation is visible at a glance)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pixelseg.data.formats import open_dataset
from pixelseg.data.index import DatasetIndex
from pixelseg.data.io import read_image
from pixelseg.data.labels import load_mask
from pixelseg.errors import PixelsegError
from pixelseg.fileio import atomic_path

TILE = 192          # tile height in pixels (the width follows the aspect ratio, capped at 2x)


def pick(index: DatasetIndex, split: str, n: int, seed: int) -> list[int]:
    """n samples spread over the split by a seeded draw (a folder sorted by name often groups similar images)."""
    samples = index.split(split)
    if not any(s.mask is not None for s in samples):
        raise PixelsegError(f"{index.root}: split '{split}' has no masks to show; pick another with --split")
    labelled = [i for i, s in enumerate(samples) if s.mask is not None]
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(labelled, size=min(n, len(labelled)), replace=False).tolist())


def tile(image: np.ndarray, mask: np.ndarray, classes, alpha: float) -> np.ndarray:
    from pixelseg.viz.overlay import overlay
    rgb = image[:, :, :3] if image.shape[2] >= 3 else np.repeat(image, 3, axis=2)
    out = overlay(rgb, mask, classes.colors, alpha, classes.ignore_index)
    h, w = out.shape[:2]
    tw = min(2 * TILE, max(1, round(w * TILE / h)))
    return cv2.resize(out, (tw, TILE), interpolation=cv2.INTER_AREA if h > TILE else cv2.INTER_NEAREST)


def show(root: str | Path, out: str | Path, format: str = "auto", split: str = "train", n: int = 16,
         augment: str | None = None, size: tuple[int, int] | None = None, cols: int = 4, alpha: float = 0.5,
         seed: int = 0) -> Path:
    """Write the grid to `out` (.png/.jpg). With `augment` (a preset or pipeline file), each image is shown
    as the training loader produces it at `size` (default: the doctor's suggested size)."""
    from pixelseg.viz.overlay import add_legend
    from pixelseg.viz.drawing import side_by_side

    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise PixelsegError(f"{out}: write the grid as .png or .jpg")
    if n < 1 or cols < 1:
        raise PixelsegError("--n and --cols must be at least 1")
    index = open_dataset(root, format)
    classes = index.classes
    chosen = pick(index, split, n, seed)
    samples = index.split(split)
    tf = None
    if augment is not None:
        from pixelseg.data.tools.doctor import suggest_image_size
        from pixelseg.data.io import image_size
        from pixelseg.data.transforms import train_transform
        size = size or suggest_image_size([image_size(samples[i].image) for i in chosen])
        tf = train_transform(size, augment, classes.ignore_index, 3)
    tiles, titles, present = [], [], set()
    for k, i in enumerate(chosen):
        s = samples[i]
        image, mask = read_image(s.image, 3), load_mask(s, index.mask_color_channel)
        if image.shape[:2] != mask.shape:
            raise PixelsegError(f"{s.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                                f"{image.shape[1]}x{image.shape[0]}; run `pixelseg verify-dataset {index.root}`")
        if tf is not None:
            tf.set_random_seed(seed * 100_003 + k)
            o = tf(image=image, mask=mask)
            image, mask = o["image"], o["mask"]
        present |= {int(v) for v in np.unique(mask) if v < classes.num_classes}
        tiles.append(tile(image, mask, classes, alpha))
        titles.append(s.stem)
    rows = [side_by_side(tiles[r:r + cols], titles[r:r + cols]) for r in range(0, len(tiles), cols)]
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    grid = add_legend(grid, classes.names, classes.colors, sorted(present))
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp, format="JPEG" if out.suffix.lower() != ".png" else "PNG")
    return out
