"""What every dataset reader shares: the layout descriptions, pairing images with masks by stem, the
deterministic validation hold-out and the common end of a reader (`make_index`).

Readers (data/formats/folder.py, data/formats/colormask.py, data/<name>.py) import this module; data/formats.py imports
the readers. Nothing here imports a reader, so the arrows run one way.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from pixelseg.data.classes import ClassTable
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.io import IMAGE_EXTS, describe_odd_file
from pixelseg.errors import PixelsegError

LAYOUTS = {
    "folder": "ROOT/{train,val[,test]}/{images,masks}/<stem>.*, or ROOT/{images,masks}/<stem>.* with no splits "
              "(index masks; classes.json 'values'/'ignore_values' map stored values such as 0/255)",
    "pairs": "ROOT/<stem>.<ext> next to its mask ROOT/<stem>_mask.png (also _label, _seg, _gt, -mask), no sub-folders",
    "keras": "ROOT/{train,val[,test]}_images + ROOT/{train,val[,test]}_segmentation (index in the blue channel)",
    "colormask": "the folder layout with RGB color masks + a color table (classes.json 'colors' or class_dict.csv)",
    "voc": "VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/{train,val}.txt}; SBD from "
           "SegmentationClassAug/ or benchmark_RELEASE/dataset/{img,cls}",
    "cityscapes": "ROOT/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png + ROOT/gtFine/{train,val}/<city>/"
                  "*_gtFine_labelIds.png",
    "ade20k": "ADEChallengeData2016/{images,annotations}/{training,validation}",
    "camvid": "ROOT/{train,val,test} + ROOT/{train,val,test}annot (SegNet), ROOT/label_colors.txt + "
              "LabeledApproved_full/*_L.png, or ROOT/codes.txt + labels/*_P.png (fast.ai)",
    "camvid11": "any CamVid layout read as the 11 SegNet classes (the 32-class layouts grouped: wall/bridge/... -> "
                "building, SUVPickupTruck/Truck_Bus/... -> car, ...; Void -> ignore)",
    "coco": "ROOT/annotations/instances_{train,val}*.json + the images, or ROOT/{train,valid}/_annotations.coco.json "
            "(Roboflow)",
    "labelme": "ROOT/[train|val|test/]<name>.json next to <name>.jpg (optional ROOT/labels.txt)",
}


def split_dirs(root: Path, split: str, fmt: str) -> tuple[Path, Path]:
    """(images, masks) folders of one split in the folder or keras layout."""
    if fmt == "keras":
        return root / f"{split}_images", root / f"{split}_segmentation"
    if split == "train" and is_unsplit(root):
        return root / "images", root / "masks"      # no split folders: validation is held out of these
    return root / split / "images", root / split / "masks"


def is_unsplit(root: Path) -> bool:
    """The most common layout of all: ROOT/images + ROOT/masks with no train/val folders."""
    return not (root / "train" / "images").is_dir() and (root / "images").is_dir() and (root / "masks").is_dir()


def list_images(d: Path, what: str = "images", odd: list[str] | None = None) -> dict[str, Path]:
    """stem -> image file of a folder. Entries that look like images but are not readable files (a dangling
    link, a folder named x.png, an animated .gif) go to `odd` with what they are, when a list is given."""
    out: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.name.startswith("."):
            continue
        problem = describe_odd_file(p, what)
        if problem is not None:
            if odd is not None and problem:
                odd.append(problem)
            continue
        if p.stem in out:
            raise PixelsegError(f"{p}: two {what} share the stem '{p.stem}' ({out[p.stem].name}); rename one")
        out[p.stem] = p
    return out


def pair_split(root: Path, split: str, fmt: str, problems: list[str] | None = None) -> list[Sample] | None:
    """Image/mask pairs of one split by file stem. With a `problems` list, unpaired files are recorded there
    and skipped (the doctor's view); without, the first one is an error."""
    img_dir, mask_dir = split_dirs(root, split, fmt)
    if not img_dir.is_dir():
        return None
    odd: list[str] = []
    images = list_images(img_dir, "images", odd)
    if not images:
        if odd:
            raise PixelsegError(odd[0])
        raise PixelsegError(f"{img_dir}: no images ({', '.join(IMAGE_EXTS)}); add images or remove the folder")
    if not mask_dir.is_dir():
        if split == "test":
            return [Sample(p, None, s) for s, p in images.items()]
        raise PixelsegError(f"{mask_dir}: mask folder not found; put one <stem>.png mask per image of {img_dir} there")
    masks = list_images(mask_dir, "masks", odd)
    missing = [images[s] for s in images if s not in masks]
    orphans = [masks[s] for s in masks if s not in images]
    if problems is not None:
        problems += odd
        problems += [f"{p}: has no mask {mask_dir / (p.stem + '.png')}; add the mask or remove the image" for p in missing]
        if len(missing) > 1:
            problems.append(f"{len(missing)} images of {img_dir} have no mask: images without masks can still teach "
                            f"the model: move them to {root / 'unlabelled'} (found by itself) or pass --unlabelled DIR")
        problems += [f"{p}: mask without an image in {img_dir}; add the image or remove the mask" for p in orphans]
        return [Sample(images[s], masks[s], s) for s in images if s in masks]
    if odd:
        more = f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""
        raise PixelsegError(odd[0] + more)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PixelsegError(f"{missing[0]}: has no mask {mask_dir / (missing[0].stem + '.png')}{more}; add the mask or "
                            f"remove the image (images without masks go to {root / 'unlabelled'}, learned from with "
                            "--semi on)")
    if orphans:
        more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
        raise PixelsegError(f"{orphans[0]}: mask without an image in {img_dir}{more}; add the image or remove the mask")
    return [Sample(images[s], masks[s], s) for s in images]


def holdout(samples: list[Sample], fraction: float) -> tuple[list[Sample], list[Sample]]:
    """Deterministic split by a hash of the stem: stable when files are added, independent of order."""
    def h(s: Sample) -> float:
        return int(hashlib.sha1(s.stem.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    val = [s for s in samples if h(s) < fraction]
    if not val and len(samples) >= 2:
        val = [min(samples, key=h)]
    keep = set(id(s) for s in val)
    return [s for s in samples if id(s) not in keep], val


def holdout_note(val: list[Sample], fraction: float) -> str:
    return (f"no val split: held out {len(val)} of the train images ({fraction:.0%}, by a hash of the file name) "
            "for validation")


def make_index(root: Path, fmt: str, classes: ClassTable, splits: dict[str, list[Sample]], val_fraction: float,
               notes: list[str] | None = None) -> DatasetIndex:
    """The shared end of every reader: empty splits dropped, a val split held out of train when there is none."""
    splits = {k: v for k, v in splits.items() if v}
    notes = list(notes or [])
    if not splits.get("train"):
        raise PixelsegError(f"{root}: no labelled training images found in the '{fmt}' layout; expected {LAYOUTS[fmt]}")
    if not splits.get("val"):
        splits["train"], splits["val"] = holdout(splits["train"], val_fraction)
        notes.append(holdout_note(splits["val"], val_fraction))
    return DatasetIndex(root, fmt, classes, splits, None, notes)


def require_dir(path: Path, fmt: str, what: str) -> Path:
    if not path.is_dir():
        raise PixelsegError(f"{path}: {what} folder not found; the '{fmt}' layout is {LAYOUTS[fmt]}")
    return path
