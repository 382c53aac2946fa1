"""Tiny datasets in the real layouts and naming of each format, with the class-index masks they must read as.

Every maker returns {stem: expected HxW class-index mask} over its labelled images. Images are 24x32 noise.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 24, 32


def image(path: Path, seed: int, size=(H, W)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


def blocks(seed: int, values, size=(H, W)) -> np.ndarray:
    """Rectangles of the given values on a grid of 8x8 cells (so edges stay exact after any read)."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(np.asarray(values), size=(size[0] // 8, size[1] // 8))
    return np.kron(cells, np.ones((8, 8), cells.dtype))


def save_palette(path: Path, idx: np.ndarray, palette: list[tuple[int, int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(idx.astype(np.uint8), mode="P")
    flat = [v for c in palette for v in c]
    im.putpalette(flat + [0] * (768 - len(flat)))
    im.save(path)


def save_gray(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.astype(np.uint8)).save(path)


def make_voc(root: Path, sbd: str | None = None) -> dict[str, np.ndarray]:
    """VOCdevkit/VOC2012 with palette masks (0..20 + 255 void borders). sbd: None | "aug" | "mat"."""
    from pixelseg.data.classes import voc_colormap
    voc = root / "VOCdevkit" / "VOC2012"
    expected = {}
    ids = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}
    for split, stems in ids.items():
        for k, stem in enumerate(stems):
            image(voc / "JPEGImages" / f"{stem}.jpg", int(stem[-2:]))
            m = blocks(int(stem[-2:]), [0, 1, 15, 20])
            m[0, :] = 255  # VOC's void outline
            save_palette(voc / "SegmentationClass" / f"{stem}.png", m, voc_colormap(256))
            expected[stem] = m
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    for split, stems in ids.items():
        (sets / f"{split}.txt").write_text("\n".join(stems) + "\n")
    (sets / "test.txt").write_text("2008_000001\n")
    image(voc / "JPEGImages" / "2008_000001.jpg", 9)
    if sbd == "aug":
        for stem in ["2007_000032", "2007_000039", "2008_000100", "2007_000033"]:
            m = blocks(7 + len(stem) + int(stem[-1]), [0, 7, 9])
            if not (voc / "JPEGImages" / f"{stem}.jpg").exists():
                image(voc / "JPEGImages" / f"{stem}.jpg", 11)
            save_gray(voc / "SegmentationClassAug" / f"{stem}.png", m)
            expected[f"aug:{stem}"] = m
    elif sbd == "mat":
        from scipy.io import savemat
        ds = root / "benchmark_RELEASE" / "dataset"
        for stem in ["2008_000200", "2007_000033"]:  # the second is a VOC val image: must stay out of train
            m = blocks(5 + int(stem[-1]), [0, 3, 12])
            image(ds / "img" / f"{stem}.jpg", 12)
            (ds / "cls").mkdir(parents=True, exist_ok=True)
            savemat(ds / "cls" / f"{stem}.mat", {"GTcls": {"Segmentation": m.astype(np.uint8), "CategoriesPresent": [1]}})
            expected[f"sbd:{stem}"] = m
        (ds / "train.txt").write_text("2008_000200\n")
        (ds / "val.txt").write_text("2007_000033\n")
    return expected


def make_cityscapes(root: Path) -> dict[str, np.ndarray]:
    """leftImg8bit + gtFine labelIds; expected = train ids from the official table."""
    from cityscapesscripts.helpers.labels import id2label
    expected = {}
    raw_ids = [0, 1, 7, 8, 11, 24, 26, 33, 6, 9]   # unlabeled, ego, road, sidewalk, building, person, car, bicycle, ground, parking
    for split, city, n in (("train", "aachen", 2), ("val", "frankfurt", 1)):
        for k in range(n):
            stem = f"{city}_{k:06d}_000019"
            image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", 10 * len(split) + k)
            raw = blocks(k + len(split), raw_ids)
            save_gray(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)
            # the distractors a real download has beside the labels
            save_gray(root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png", raw)
            expected[stem] = np.vectorize(lambda v: id2label[int(v)].trainId if 0 <= id2label[int(v)].trainId < 255 else 255)(raw)
    image(root / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png", 5)
    return expected


def make_ade20k(root: Path, info: bool = False) -> dict[str, np.ndarray]:
    ade = root / "ADEChallengeData2016"
    expected = {}
    for split, sub, pre in (("train", "training", "ADE_train"), ("val", "validation", "ADE_val")):
        for k in range(2 if split == "train" else 1):
            stem = f"{pre}_{k + 1:08d}"
            image(ade / "images" / sub / f"{stem}.jpg", 10 * len(split) + k)
            raw = blocks(k + 3 * len(split), [0, 1, 2, 150])
            save_gray(ade / "annotations" / sub / f"{stem}.png", raw)
            expected[stem] = np.where(raw == 0, 255, raw - 1)
    if info:
        lines = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i}\t0.01\t10\t1\tthing{i};alias" for i in range(1, 151)]
        (ade / "objectInfo150.txt").write_text("\n".join(lines) + "\n")
    return expected


def make_camvid_segnet(root: Path) -> dict[str, np.ndarray]:
    expected = {}
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for k in range(n):
            stem = {"train": "0001TP", "val": "0016E5", "test": "Seq05VD"}[split] + f"_{k:06d}"
            image(root / split / f"{stem}.png", 10 * len(split) + k)
            raw = blocks(k + 5 * len(split), [0, 3, 8, 10, 11])
            save_gray(root / f"{split}annot" / f"{stem}.png", raw)
            expected[stem] = np.where(raw == 11, 255, raw)
    return expected


CAMVID_COLORS = [((64, 128, 64), "Animal"), ((192, 0, 128), "Archway"), ((128, 64, 128), "Road"),
                 ((0, 0, 0), "Void"), ((64, 0, 128), "Car")]


def color_mask(idx: np.ndarray, colors) -> np.ndarray:
    return np.asarray(colors, np.uint8)[idx]


def make_camvid_color(root: Path) -> dict[str, np.ndarray]:
    """The original release: label_colors.txt, 701_StillsRaw_full/, LabeledApproved_full/<stem>_L.png."""
    (root).mkdir(parents=True, exist_ok=True)
    (root / "label_colors.txt").write_text("".join(f"{r} {g} {b}\t\t{n}\n" for (r, g, b), n in CAMVID_COLORS))
    expected = {}
    for k, stem in enumerate(["0001TP_006690", "0001TP_006720", "0006R0_f02340"]):
        image(root / "701_StillsRaw_full" / f"{stem}.png", k)
        idx = blocks(k, [0, 1, 2, 3, 4])   # rows of CAMVID_COLORS
        (root / "LabeledApproved_full").mkdir(exist_ok=True)
        Image.fromarray(color_mask(idx, [c for c, _ in CAMVID_COLORS])).save(root / "LabeledApproved_full" / f"{stem}_L.png")
        expected[stem] = np.array([0, 1, 2, 255, 3])[idx]   # Void -> ignore, the rest renumbered in file order
    (root / "valid.txt").write_text("0006R0_f02340.png\n")
    return expected


def make_colormask(root: Path, class_dict: bool = False) -> dict[str, np.ndarray]:
    colors = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    if class_dict:
        root.mkdir(parents=True, exist_ok=True)
        (root / "class_dict.csv").write_text("name,r,g,b\nsky,0,0,0\nroof,255,0,0\ntree,0,255,0\nvoid,9,9,9\n")
    else:
        root.mkdir(parents=True, exist_ok=True)
        (root / "classes.json").write_text(json.dumps({"names": ["sky", "roof", "tree"], "colors": [list(c) for c in colors],
                                                       "ignore_colors": [[9, 9, 9]]}))
    expected = {}
    for split, stems in (("train", ["a", "b"]), ("val", ["c"])):
        for k, stem in enumerate(stems):
            image(root / split / "images" / f"{stem}.jpg", 10 * len(split) + k)
            idx = blocks(k + len(split), [0, 1, 2, 3])
            rgb = color_mask(idx, colors + [(9, 9, 9)])
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / split / "masks" / f"{stem}.png")
            expected[stem] = np.where(idx == 3, 255, idx)
    return expected


def make_coco(root: Path, roboflow: bool = False) -> dict[str, np.ndarray]:
    """Polygons (rectangles, so the raster is exact), an uncompressed RLE, a compressed RLE, an overlap of two
    classes (-> ignore), and an image without annotations."""
    with warnings.catch_warnings():  # pycocotools under numpy 2 warns on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        return _make_coco(root, roboflow)


def _make_coco(root: Path, roboflow: bool) -> dict[str, np.ndarray]:
    from pycocotools import mask as mask_utils
    cats = [{"id": 3, "name": "car", "supercategory": "vehicle"}, {"id": 7, "name": "person", "supercategory": "person"}]
    expected = {}
    for split, n in (("train", 2), ("val", 1)):
        images, anns = [], []
        img_dir = root / split if roboflow else root / f"{split}2017"
        for k in range(n):
            fname = f"{split}_{k:04d}.jpg"
            image(img_dir / fname, 10 * len(split) + k)
            images.append({"id": k + 1, "file_name": fname, "height": H, "width": W})
            exp = np.zeros((H, W), np.uint8)
            if k == 0:
                # polygon rectangle x 4..12, y 2..10 (pycocotools fills pixels whose centres are inside)
                anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 3, "iscrowd": 0,
                             "segmentation": [[4, 2, 12, 2, 12, 10, 4, 10]], "area": 64, "bbox": [4, 2, 8, 8]})
                ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[4, 2, 12, 2, 12, 10, 4, 10]], H, W)))
                exp[ref > 0] = 1
                # compressed RLE of a person block that overlaps the car's right part
                blk = np.zeros((H, W), np.uint8, order="F")
                blk[6:20, 10:24] = 1
                rle = mask_utils.encode(np.asfortranarray(blk))
                anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 7, "iscrowd": 0,
                             "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}, "area": 1, "bbox": [0, 0, 1, 1]})
                overlap = (blk > 0) & (exp == 1)
                exp[blk > 0] = 2
                exp[overlap] = 255
            elif split == "val":
                blk = np.zeros((H, W), np.uint8)
                blk[0:8, 0:16] = 1
                counts, flat, prev, run = [], blk.ravel(order="F"), 0, 0
                for v in flat:  # uncompressed RLE: alternating run lengths, starting with zeros
                    if v != prev:
                        counts.append(run)
                        prev, run = v, 0
                    run += 1
                counts.append(run)
                anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 3, "iscrowd": 1,
                             "segmentation": {"size": [H, W], "counts": counts}, "area": 128, "bbox": [0, 0, 16, 8]})
                exp[blk > 0] = 1
            expected[Path(fname).stem] = exp  # train_0001: no annotations -> all background
        doc = {"images": images, "annotations": anns, "categories": cats}
        if roboflow:
            (img_dir / "_annotations.coco.json").write_text(json.dumps(doc))
        else:
            (root / "annotations").mkdir(parents=True, exist_ok=True)
            (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(doc))
    return expected


def write_labelme(path: Path, image_name: str, shapes: list[dict], h: int = H, w: int = W) -> None:
    doc = {"version": "5.4.1", "flags": {}, "imagePath": image_name, "imageData": None, "imageHeight": h, "imageWidth": w,
           "shapes": [{"group_id": None, "flags": {}, "description": "", **s} for s in shapes]}
    path.write_text(json.dumps(doc, indent=2))


def make_labelme(root: Path, labels_txt: bool = True) -> dict[str, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    if labels_txt:
        (root / "labels.txt").write_text("__ignore__\n_background_\ncat\ndog\n")
    expected = {}
    for k, stem in enumerate(["img_a", "img_b", "img_c"]):
        image(root / f"{stem}.jpg", k)
        exp = np.zeros((H, W), np.uint8)
        shapes = [{"label": "cat", "points": [[2, 2], [10, 12]], "shape_type": "rectangle"}]
        exp[2:13, 2:11] = 1
        if k != 1:
            # a dog polygon drawn after the cat covers it where they overlap
            shapes.append({"label": "dog", "points": [[8, 4], [20, 4], [20, 16], [8, 16]], "shape_type": "polygon"})
            exp[4:17, 8:21] = 2
        write_labelme(root / f"{stem}.json", f"{stem}.jpg", shapes)
        expected[stem] = exp
    return expected
