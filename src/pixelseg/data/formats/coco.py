"""COCO-style annotations (polygons or RLE), rasterized to class masks with pycocotools.

    ROOT/annotations/<anything with train|val|test in the name>.json  + images in ROOT/<json stem minus
        "instances_">, ROOT/images/<split>, ROOT/<split> or ROOT/images (COCO, CVAT, Label Studio exports)
    ROOT/{train,valid,val,test}/_annotations.coco.json with the images beside it (Roboflow exports)
Class 0 is "background" (pixels no annotation covers); the categories follow in the order of their ids.
Pixels that annotations of two different classes both claim become the ignore index. The JSON is read
once at open (it is the index); the masks are rasterized lazily in the loader workers.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from pixelseg.data.classes import ClassTable, voc_colormap
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.labels import Polygons
from pixelseg.data.formats.layout import make_index
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry

ROBOFLOW_NAME = "_annotations.coco.json"
SPLIT_WORDS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _annotation_files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    ann_dir = root / "annotations"
    if ann_dir.is_dir():
        for p in sorted(ann_dir.glob("*.json")):
            words = re.findall(r"[a-z]+", p.stem.lower())
            split = next((SPLIT_WORDS[w] for w in words if w in SPLIT_WORDS), None)
            if split is None and len(list(ann_dir.glob("*.json"))) == 1:
                split = "train"
            if split and split not in found:
                found[split] = p
    for d in ("train", "valid", "val", "test"):
        if (root / d / ROBOFLOW_NAME).is_file():
            found.setdefault(SPLIT_WORDS[d], root / d / ROBOFLOW_NAME)
    return found


def register(formats: Registry) -> None:
    formats.register("coco", detect=detect)(open)


def detect(root: Path) -> bool:
    return bool(_annotation_files(root))


def _load(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PixelsegError(f"{path}: not valid JSON ({e}); re-export the annotations") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise PixelsegError(f"{path}: not a COCO annotation file (needs 'images', 'annotations' and 'categories' lists)")
    return doc


def _image_dir(root: Path, ann: Path, split: str, first: str) -> Path:
    stem = ann.stem.lower().replace("instances_", "")
    for d in (ann.parent, root / ann.stem.replace("instances_", ""), root / stem, root / "images" / stem,
              root / "images" / split, root / split, root / "images", root):
        if (d / first).is_file():
            return d
    raise PixelsegError(f"{ann}: its first image '{first}' is in none of {root}/<split>, {root}/images/<split>, "
                        f"{root}/images, {root}; put the images there")


def _categories(doc: dict, path: Path) -> list[tuple[int, str]]:
    try:
        cats = sorted((int(c["id"]), str(c["name"])) for c in doc["categories"])
    except (KeyError, TypeError, ValueError):
        raise PixelsegError(f"{path}: every category needs an 'id' and a 'name'") from None
    # kept as listed, even a category no annotation uses (Roboflow lists the project name as one): the class
    # table must not depend on which images happen to be annotated; the doctor reports never-seen classes
    return cats


def open(root: Path, val_fraction: float = 0.1) -> DatasetIndex:  # noqa: A001 - the format-module contract
    files = _annotation_files(root)
    if "train" not in files:
        raise PixelsegError(f"{root}: no training annotation file; expected {root}/annotations/instances_train*.json "
                            f"(or {root}/train/{ROBOFLOW_NAME})")
    docs = {split: _load(p) for split, p in files.items()}
    cats = _categories(docs["train"], files["train"])
    for split, doc in docs.items():
        if _categories(doc, files[split]) != cats:
            raise PixelsegError(f"{files[split]}: its categories differ from {files['train']}'s; all splits need the same "
                                "category list")
    names = ["background"] + [n for _, n in cats]
    if len(set(names)) != len(names):
        raise PixelsegError(f"{files['train']}: category names repeat (or one is called 'background'); make them unique")
    index_of = {cid: i + 1 for i, (cid, _) in enumerate(cats)}
    classes = ClassTable(tuple(names), tuple(voc_colormap(len(names))), 255)
    splits = {}
    for split, doc in docs.items():
        path = files[split]
        by_image: dict[int, list] = {}
        for a in doc["annotations"]:
            if "segmentation" not in a or not a["segmentation"]:
                continue  # a box-only annotation has no pixels to give
            if a.get("category_id") not in index_of:
                raise PixelsegError(f"{path}: annotation {a.get('id')} has category_id {a.get('category_id')}, "
                                    "which is not in 'categories'")
            by_image.setdefault(a["image_id"], []).append((index_of[a["category_id"]], json.dumps(a["segmentation"])))
        if not doc["images"]:
            continue
        img_dir = _image_dir(root, path, split, doc["images"][0]["file_name"])
        samples = []
        for im in sorted(doc["images"], key=lambda im: im["file_name"]):
            img = img_dir / im["file_name"]
            if not img.is_file():
                raise PixelsegError(f"{img}: listed in {path} but missing; add it or remove it from the annotations")
            decode = Polygons(int(im["height"]), int(im["width"]), tuple(by_image.get(im["id"], ())), 255)
            # the annotation file is the "mask" path: errors while rasterizing name it
            samples.append(Sample(img, path, Path(im["file_name"]).stem, decode))
        splits[split] = samples
    return make_index(root, "coco", classes, splits, val_fraction)
