"""Color-coded masks in the folder layout: each pixel's RGB color names its class.

    ROOT/{train,val[,test]}/{images,masks}/<stem>.*     masks are RGB PNGs (or ROOT/{images,masks}, no splits)
    ROOT/classes.json   {"names": [...], "colors": [[r,g,b], ...], "ignore_colors": [[r,g,b], ...]}   or
    ROOT/class_dict.csv name,r,g,b per line (the common Kaggle export); a class named "void" is the ignore color
A color the table does not list is an error naming it, its pixel count and the file (never rounded to
the nearest class: that is how a JPEG'd or anti-aliased mask silently mislabels edges).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from pixelseg.data.classes import ClassTable
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.io import IMAGE_EXTS, open_image
from pixelseg.data.labels import ColorMap
from pixelseg.data.formats.layout import make_index, pair_split, split_dirs
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry

VOID_NAMES = ("void", "unlabelled", "unlabeled")


def register(formats: Registry) -> None:
    formats.register("colormask", detect=detect, strict=True)(open)


def detect(root: Path) -> bool:
    return split_dirs(root, "train", "folder")[0].is_dir() and has_color_masks(root)


def has_color_masks(root: Path) -> bool:
    """Whether the first training mask is RGB with differing channels (a color mask, not a gray index mask)."""
    mask_dir = split_dirs(root, "train", "folder")[1]
    if not mask_dir.is_dir():
        return False
    first = next((p for p in sorted(mask_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")), None)
    if first is None:
        return False
    try:
        with open_image(first, "mask") as im:
            if im.mode not in ("RGB", "RGBA"):
                return False
            a = np.asarray(im.convert("RGB"))
    except (OSError, PixelsegError):
        return False  # the folder reader reports the undecodable file with its name
    return not ((a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all())


def read_color_table(root: Path) -> tuple[ClassTable, ColorMap, str]:
    cj, cd = root / "classes.json", root / "class_dict.csv"
    if cj.is_file():
        try:
            d = json.loads(cj.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PixelsegError(f"{cj}: not valid JSON ({e}); fix the file") from None
        if not isinstance(d, dict) or "colors" not in d:
            raise PixelsegError(f"{cj}: the masks are color-coded, so classes.json needs 'colors': one [r, g, b] per "
                                "name (and optionally 'ignore_colors')")
        ignore = d.pop("ignore_colors", [])
        classes = ClassTable.from_dict(d, str(cj))
        if not (isinstance(ignore, list) and all(isinstance(c, list) and len(c) == 3 for c in ignore)):
            raise PixelsegError(f"{cj}: 'ignore_colors' must be a list of [r, g, b]")
        source = str(cj)
    elif cd.is_file():
        rows = list(csv.reader(cd.read_text(encoding="utf-8").splitlines()))
        if rows and not rows[0][1].strip().isdigit():
            rows = rows[1:]  # header line (name,r,g,b)
        names, colors, ignore = [], [], []
        for n, row in enumerate(rows, 2):
            try:
                name, rgb = row[0].strip(), [int(v) for v in row[1:4]]
                if len(rgb) != 3:
                    raise ValueError
            except (ValueError, IndexError):
                raise PixelsegError(f"{cd}: line {n} {row} is not 'name,r,g,b'") from None
            if name.lower() in VOID_NAMES:
                ignore.append(rgb)
            else:
                names.append(name)
                colors.append(rgb)
        classes = ClassTable.from_dict({"names": names, "colors": colors}, str(cd))
        source = str(cd)
    else:
        raise PixelsegError(f"{root}: masks are color-coded but there is no color table; write {cj} with 'names' and "
                            "'colors' (one [r, g, b] per class) or a class_dict.csv (name,r,g,b)")
    all_colors = [tuple(c) for c in classes.colors] + [tuple(int(v) for v in c) for c in ignore]
    if len(set(all_colors)) != len(all_colors):
        raise PixelsegError(f"{source}: two classes share a color; each class needs its own color")
    indices = tuple(range(classes.num_classes)) + (classes.ignore_index,) * len(ignore)
    return classes, ColorMap(tuple(all_colors), indices), source


def open(root: Path, val_fraction: float = 0.1, strict: bool = True) -> DatasetIndex:  # noqa: A001 - the format-module contract
    if not split_dirs(root, "train", "folder")[0].is_dir():
        raise PixelsegError(f"{root / 'train' / 'images'}: not found; the colormask layout is "
                            "ROOT/train/images + ROOT/train/masks, or ROOT/images + ROOT/masks (color PNGs), "
                            "and a color table")
    classes, decode, source = read_color_table(root)
    splits = {}
    problems: list[str] | None = None if strict else []
    for split in ("train", "val", "test"):
        pairs = pair_split(root, split, "folder", problems)
        if pairs is not None:
            splits[split] = [Sample(s.image, s.mask, s.stem, decode if s.mask else None) for s in pairs]
    index = make_index(root, "colormask", classes, splits, val_fraction, [f"color masks decoded with the table in {source}"])
    index.problems = problems or []
    return index
