"""ADE20K SceneParsing (ADEChallengeData2016): 150 classes.

    ROOT/images/{training,validation}/ADE_{train,val}_<n>.jpg
    ROOT/annotations/{training,validation}/ADE_{train,val}_<n>.png    0 = "other" (not a class), 1..150
Stored value 0 becomes the ignore index and 1..150 become classes 0..149 (the "reduce zero label"
convention), so "other" never counts as a class. Class names come from ROOT/objectInfo150.txt (or .csv)
when the download has it, else from the same list built in.
"""
from __future__ import annotations

import csv
from pathlib import Path

from pixelseg.data.classes import ClassTable, voc_colormap
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.labels import value_map
from pixelseg.data.formats.layout import make_index, require_dir
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry

SPLITS = {"train": "training", "val": "validation"}
NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet", "sidewalk",
    "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water", "painting", "sofa",
    "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill",
    "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball",
    "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
assert len(NAMES) == 150


def find_root(root: Path) -> Path | None:
    for cand in (root, root / "ADEChallengeData2016"):
        if (cand / "images" / "training").is_dir() and (cand / "annotations").is_dir():
            return cand
    return None


def register(formats: Registry) -> None:
    formats.register("ade20k", detect=detect)(open)


def detect(root: Path) -> bool:
    return find_root(root) is not None


def _names(root: Path) -> tuple[str, ...]:
    for info in (root / "objectInfo150.txt", root / "objectInfo150.csv"):
        if info.is_file():
            delim = "\t" if info.suffix == ".txt" else ","
            rows = list(csv.DictReader(info.read_text(encoding="utf-8").splitlines(), delimiter=delim))
            try:
                names = [r["Name"].split(";")[0].strip() for r in sorted(rows, key=lambda r: int(r["Idx"]))]
            except (KeyError, ValueError):
                raise PixelsegError(f"{info}: expected columns Idx and Name (ADE20K's objectInfo150); "
                                    "fix or delete the file to use the built-in names") from None
            if len(names) != 150:
                raise PixelsegError(f"{info}: lists {len(names)} classes, ADE20K SceneParsing has 150")
            # a few ADE names repeat once cut at ';' ("screen"); keep them unique for the class table
            seen: dict[str, int] = {}
            out = []
            for n in names:
                seen[n] = seen.get(n, 0) + 1
                out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
            return tuple(out)
    return NAMES


def open(root: Path, val_fraction: float = 0.1) -> DatasetIndex:  # noqa: A001 - the format-module contract
    found = find_root(root)
    if found is None:
        raise PixelsegError(f"{root}: no images/training + annotations folders (here or in ADEChallengeData2016/); "
                            "the ADE20K layout is ROOT/images/{training,validation}/*.jpg + ROOT/annotations/{training,validation}/*.png")
    root = found
    pairs = {0: 255, **{v: v - 1 for v in range(1, 151)}, 255: 255}
    decode = value_map(pairs, "ADE20K labels 0..150 (0 = other)")
    splits = {}
    for split, sub in SPLITS.items():
        img_dir = root / "images" / sub
        if not img_dir.is_dir():
            continue
        ann_dir = require_dir(root / "annotations" / sub, "ade20k", "annotation")
        samples = []
        for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
            ann = ann_dir / f"{img.stem}.png"
            if not ann.is_file():
                raise PixelsegError(f"{img}: has no annotation {ann}; add it or remove the image")
            samples.append(Sample(img, ann, img.stem, decode))
        splits[split] = samples
    names = _names(root)
    return make_index(root, "ade20k", ClassTable(names, tuple(voc_colormap(151)[1:]), 255), splits, val_fraction)
