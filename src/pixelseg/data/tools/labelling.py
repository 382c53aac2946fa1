"""The labelling round trip: images with pre-labels out to a labelling tool, corrected masks back in.

    export_labelme(items, classes, OUT)   OUT/<stem>.<ext> (a copy of each image) + OUT/<stem>.json (LabelMe
                                          polygons of its label map, one shape per connected region and class)
                                          + OUT/labels.txt (the class names, class 0 as "_background_")
    import_labelme(SRC, DATASET)          rasterizes SRC's LabelMe files (data/formats/labelme.py, the reader pixelseg
                                          already has) and writes them as DATASET's masks: a mask that exists is
                                          replaced (the old one kept under DATASET/.pixelseg-replaced/<time>/),
                                          a new image goes to the split asked for

LabelMe (wkentaro/labelme) is the labelling tool whose JSON pixelseg reads as a dataset format; CVAT and Label
Studio import LabelMe/COCO polygons too. Why polygons by hand: OpenCV gives the contours, but no library writes a
label map as LabelMe shapes. Holes (a region of another class inside an object) become shapes drawn after the
object, so LabelMe's file-order drawing (later covers earlier) gives the label map back.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from pixelseg.errors import PixelsegError

BACKGROUND = "_background_"        # labelme's name for class 0 (data/formats/labelme.py reads it back as class 0)


def label_shapes(label: np.ndarray, names, ignore_index: int = 255, epsilon: float = 0.7) -> list[dict]:
    """LabelMe polygon shapes that redraw `label` (H x W class indices) when drawn in order: every region
    of every class, largest first, holes as regions of the class inside them. Class 0 is the canvas."""
    shapes = []
    for c in np.unique(label):
        c = int(c)
        if c == 0 or c == ignore_index or c >= len(names):
            continue
        contours, _ = cv2.findContours((label == c).astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        for cnt in contours:
            poly = cv2.approxPolyDP(cnt, epsilon, True).reshape(-1, 2) if len(cnt) > 8 else cnt.reshape(-1, 2)
            if len(poly) < 3:
                x, y = cnt.reshape(-1, 2).min(0)
                poly = np.array([[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1]])   # a 1-2 pixel region
            area = cv2.contourArea(cnt.astype(np.float32))
            shapes.append((area, {"label": str(names[c]), "points": [[float(x), float(y)] for x, y in poly],
                                  "group_id": None, "shape_type": "polygon", "flags": {}}))
    # largest first: a region drawn later (smaller) lies inside or beside it, never under it
    shapes.sort(key=lambda t: -t[0])
    holes = _holes(label, names, ignore_index)
    return [s for _, s in shapes] + holes


def _holes(label: np.ndarray, names, ignore_index: int) -> list[dict]:
    """Background (class 0) regions enclosed by other classes: drawn as _background_ after the objects."""
    bg = (label == 0).astype(np.uint8)
    n, comp = cv2.connectedComponents(bg, connectivity=4)
    out = []
    h, w = label.shape
    for k in range(1, n):
        region = comp == k
        ys, xs = np.nonzero(region)
        if ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1:
            continue                      # touches the border: part of the canvas, not a hole
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for cnt in contours:
            pts = cnt.reshape(-1, 2)
            if len(pts) >= 3:
                out.append({"label": BACKGROUND, "points": [[float(x), float(y)] for x, y in pts], "group_id": None,
                            "shape_type": "polygon", "flags": {}})
    return out


def check_export_folder(out: str | Path) -> Path:
    """`out` may receive LabelMe files: new or empty (a folder with files may hold someone's corrections)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PixelsegError(f"{out}: exists and is not empty (it may hold corrected labels); import it with "
                            f"`pixelseg data import {out} --into DATASET` or move it away, then run again")
    return out


def export_labelme(items, classes, out: str | Path) -> list[Path]:
    """Write each (image path, label map or None) of `items` as a LabelMe file with a copy of the image into
    `out` (created; it must be new or empty, nothing else is touched). Returns the JSON files."""
    from pixelseg.data.io import image_size
    from pixelseg.fileio import write_json, write_text
    out = check_export_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(classes.names)
    write_text(out / "labels.txt", "\n".join(["__ignore__", BACKGROUND, *names[1:]]) + "\n")
    written, seen = [], set()
    for image, label in items:
        image = Path(image)
        if image.stem in seen:
            raise PixelsegError(f"{image}: two images share the stem '{image.stem}'; rename one before exporting")
        seen.add(image.stem)
        shutil.copyfile(image, out / image.name)
        h, w = image_size(image)
        shapes = [] if label is None else label_shapes(np.asarray(label), names, classes.ignore_index)
        doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image.name, "imageData": None,
               "imageHeight": int(h), "imageWidth": int(w)}
        write_json(out / f"{image.stem}.json", doc)
        written.append(out / f"{image.stem}.json")
    return written


def import_labelme(src: str | Path, dataset: str | Path, split: str = "train") -> dict:
    """Read the LabelMe files under `src` and write them as masks of `dataset` (folder layout, split or not, or
    flat pairs), matching classes by name. Returns {"replaced", "added", "backup"}."""
    from PIL import Image

    from pixelseg.data.formats import open_dataset
    from pixelseg.data.labels import load_mask
    from pixelseg.data.formats.layout import split_dirs
    from pixelseg.fileio import atomic_path

    src, dataset = Path(src), Path(dataset)
    target = open_dataset(dataset)
    if target.format not in ("folder", "pairs"):
        raise PixelsegError(f"{dataset}: a {target.format} dataset; import writes index masks into the folder layout: "
                            f"convert it first (`pixelseg data convert {dataset} --to folder --out DIR`)")
    if any(s.decode is not None for v in target.splits.values() for s in v if s.mask is not None):
        raise PixelsegError(f"{dataset}/classes.json maps stored values ('values'/'ignore_values'): import writes class "
                            "indices; remove the mapping (convert the masks) first")
    incoming = open_dataset(src, "labelme")
    names = {n: i for i, n in enumerate(target.classes.names)}
    mapping = {}
    for i, name in enumerate(incoming.classes.names):
        key = target.classes.names[0] if name == BACKGROUND else name
        if key not in names:
            raise PixelsegError(f"{src}: label '{name}' is not a class of {dataset} ({', '.join(target.classes.names)}); "
                                "rename the shapes or add the class to the dataset's classes.json")
        mapping[i] = names[key]
    lut = np.full(65536, target.classes.ignore_index, np.int64)
    for i, j in mapping.items():
        lut[i] = j
    lut[incoming.classes.ignore_index] = target.classes.ignore_index
    existing = {s.stem: s for v in target.splits.values() for s in v}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = dataset / ".pixelseg-replaced" / stamp
    replaced, added = [], []
    # everything is decoded and checked before the first file is written: a bad file leaves the dataset as it was
    masks = [(s, lut[load_mask(s, None)].astype(np.uint8 if target.classes.num_classes <= 255 else np.uint16))
             for v in incoming.splits.values() for s in v]
    for s, mask in masks:
        old = existing.get(s.stem)
        if old is not None and old.mask is not None:
            backup.mkdir(parents=True, exist_ok=True)
            shutil.copy2(old.mask, backup / old.mask.name)
            dest = old.mask if old.mask.suffix.lower() == ".png" else old.mask.with_suffix(".png")
            replaced.append(str(dest))
        elif old is not None and target.format == "folder":      # an image of the set without a mask yet
            dest = old.image.parent.parent / "masks" / f"{s.stem}.png"
            dest.parent.mkdir(parents=True, exist_ok=True)
            added.append(str(dest))
        else:
            if target.format == "pairs":
                img_dest, dest = dataset / s.image.name, dataset / f"{s.stem}_mask.png"
            else:
                img_dir, mask_dir = split_dirs(dataset, split, "folder")
                img_dir.mkdir(parents=True, exist_ok=True)
                mask_dir.mkdir(parents=True, exist_ok=True)
                img_dest, dest = img_dir / s.image.name, mask_dir / f"{s.stem}.png"
            if old is None and not img_dest.exists():
                shutil.copy2(s.image, img_dest)
            added.append(str(dest))
        with atomic_path(dest) as tmp:
            Image.fromarray(mask).save(tmp, format="PNG")
        if old is not None and old.mask is not None and old.mask != dest:
            old.mask.unlink()                 # a .tif/.bmp mask replaced by its .png (a copy is in the backup)
    return {"replaced": replaced, "added": added, "backup": str(backup) if replaced else None}
