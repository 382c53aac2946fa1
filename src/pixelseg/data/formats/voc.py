"""Pascal VOC 2012 segmentation, optionally with the SBD augmentation (the usual 10,582-image 'trainaug').

    VOC2012/JPEGImages/<id>.jpg
    VOC2012/SegmentationClass/<id>.png          palette PNGs: the stored value is the class (0..20), 255 = void
    VOC2012/ImageSets/Segmentation/{train,val,test}.txt
SBD, when present, replaces the train split by trainaug (VOC train + SBD train/val, minus VOC val):
    VOC2012/SegmentationClassAug/<id>.png       index PNGs as DeepLab distributes them (+ optional trainaug.txt), or
    benchmark_RELEASE/dataset/{img,cls} (or SBD/{img,cls}) beside or inside VOC2012: the original .mat release
ROOT may be VOC2012 itself, VOCdevkit, or their parent.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelseg.data.classes import ClassTable, voc_colormap
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.formats.layout import make_index
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry

NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
         "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
LAYOUT = "VOC2012/JPEGImages/<id>.jpg, VOC2012/SegmentationClass/<id>.png, VOC2012/ImageSets/Segmentation/{train,val}.txt"


def classes() -> ClassTable:
    return ClassTable(NAMES, tuple(voc_colormap(len(NAMES))), 255)


def find_voc(root: Path) -> Path | None:
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() and (cand / "SegmentationClass").is_dir():
            return cand
    return None


def register(formats: Registry) -> None:
    formats.register("voc", detect=detect)(open)


def detect(root: Path) -> bool:
    return find_voc(root) is not None


def _ids(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class SbdMat:
    """An SBD cls/<id>.mat: GTcls.Segmentation holds the class indices (0..20), no void."""

    def __call__(self, path: Path) -> np.ndarray:
        from scipy.io import loadmat
        try:
            seg = loadmat(path, squeeze_me=True)["GTcls"]["Segmentation"].item()
        except FileNotFoundError:
            raise PixelsegError(f"{path}: SBD mask not found; add it or remove the id from the split list") from None
        except (KeyError, ValueError, TypeError, OSError) as e:
            raise PixelsegError(f"{path}: not an SBD class mask (needs GTcls.Segmentation) ({e})") from None
        return np.asarray(seg).astype(np.uint8)


def _find_sbd(voc: Path) -> Path | None:
    for base in (voc, voc.parent, voc.parent.parent):
        for cand in (base / "benchmark_RELEASE" / "dataset", base / "SBD"):
            if (cand / "cls").is_dir():
                return cand
    return None


def _sample(voc: Path, i: str, masked: bool) -> Sample:
    img, mask = voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClass" / f"{i}.png"
    if not img.is_file():
        raise PixelsegError(f"{img}: listed in the split files but missing; the VOC layout is {LAYOUT}")
    if masked and not mask.is_file():
        raise PixelsegError(f"{mask}: listed in the split files but missing; the VOC layout is {LAYOUT}")
    return Sample(img, mask if masked else None, i)


def open(root: Path, val_fraction: float = 0.1) -> DatasetIndex:  # noqa: A001 - the format-module contract
    voc = find_voc(root)
    if voc is None:
        raise PixelsegError(f"{root}: no JPEGImages + SegmentationClass folders (here, in VOC2012/ or VOCdevkit/VOC2012/); "
                            f"the VOC layout is {LAYOUT}")
    sets = voc / "ImageSets" / "Segmentation"
    if not (sets / "train.txt").is_file():
        raise PixelsegError(f"{sets / 'train.txt'}: split list not found; the VOC layout is {LAYOUT}")
    splits = {"train": [_sample(voc, i, True) for i in _ids(sets / "train.txt")]}
    if (sets / "val.txt").is_file():
        splits["val"] = [_sample(voc, i, True) for i in _ids(sets / "val.txt")]
    if (sets / "test.txt").is_file():
        splits["test"] = [_sample(voc, i, False) for i in _ids(sets / "test.txt")]
    notes = []
    val_ids = {s.stem for s in splits.get("val", [])}
    aug = voc / "SegmentationClassAug"
    sbd = _find_sbd(voc)
    if aug.is_dir():
        listed = sets / "trainaug.txt"
        ids = _ids(listed) if listed.is_file() else sorted(p.stem for p in aug.glob("*.png"))
        train = []
        for i in ids:
            if i in val_ids:
                continue
            img, mask = voc / "JPEGImages" / f"{i}.jpg", aug / f"{i}.png"
            if not img.is_file() or not mask.is_file():
                raise PixelsegError(f"{img if not img.is_file() else mask}: missing for the SBD trainaug split; "
                                    f"SegmentationClassAug/<id>.png needs JPEGImages/<id>.jpg")
            train.append(Sample(img, mask, i))
        splits["train"] = train
        notes.append(f"SBD augmentation: train = {len(train)} images from {aug.name} (VOC val images left out)")
    elif sbd is not None:
        ids = []
        for name in ("train.txt", "val.txt"):
            if (sbd / name).is_file():
                ids += _ids(sbd / name)
        voc_train = {s.stem: s for s in splits["train"]}
        train = dict(voc_train)
        for i in ids:
            if i in val_ids or i in train:
                continue
            img = sbd / "img" / f"{i}.jpg"
            if not img.is_file():
                img = voc / "JPEGImages" / f"{i}.jpg"
            if not img.is_file():
                raise PixelsegError(f"{sbd / 'img' / (i + '.jpg')}: SBD image listed in {sbd} but missing")
            train[i] = Sample(img, sbd / "cls" / f"{i}.mat", i, SbdMat())
        splits["train"] = [train[k] for k in sorted(train)]
        notes.append(f"SBD augmentation from {sbd}: train = {len(train)} images (VOC train + SBD, VOC val left out)")
    return make_index(voc, "voc", classes(), splits, val_fraction, notes)
