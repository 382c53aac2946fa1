"""Cityscapes fine annotations, mapped to the 19 evaluation classes.

    ROOT/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
The labelIds (0..33, -1 = license plate) are mapped to train ids 0..18, everything else to 255, with the
official table of the `cityscapesscripts` package, never a hand-typed copy. Where only the
*_gtFine_labelTrainIds.png that cityscapesscripts' createTrainIdLabelImgs writes are present, those are read. The test split's public
annotations are placeholders, so test is read as unlabelled.
"""
from __future__ import annotations

from pathlib import Path

from pixelseg.data.classes import ClassTable
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.labels import ValueMap, value_map
from pixelseg.data.formats.layout import make_index, require_dir
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry

IMAGE_SUFFIX, LABEL_SUFFIX, TRAIN_ID_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"
TRAIN_IDS = value_map({**{i: i for i in range(19)}, 255: 255}, "Cityscapes train ids (0..18, 255)")


def _labels():
    from cityscapesscripts.helpers.labels import labels
    return labels


def classes() -> ClassTable:
    train = sorted((lab for lab in _labels() if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId)
    return ClassTable(tuple(lab.name for lab in train), tuple(tuple(lab.color) for lab in train), 255)


def label_map() -> ValueMap:
    # labelIds are stored as uint8; id -1 (license plate) is not stored in the PNGs (it is 'unlabeled' there)
    pairs = {lab.id: (lab.trainId if 0 <= lab.trainId < 255 else 255) for lab in _labels() if lab.id >= 0}
    pairs[255] = 255
    return value_map(pairs, "Cityscapes labelIds (0..33)")


def register(formats: Registry) -> None:
    formats.register("cityscapes", detect=detect)(open)


def detect(root: Path) -> bool:
    return (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir()


def _split(root: Path, split: str, labelled: bool, decode: ValueMap) -> list[Sample]:
    img_dir = root / "leftImg8bit" / split
    if not img_dir.is_dir():
        return []
    out = []
    for img in sorted(img_dir.glob(f"*/*{IMAGE_SUFFIX}")):
        stem = img.name[: -len(IMAGE_SUFFIX)]
        if not labelled:
            out.append(Sample(img, None, stem))
            continue
        lab = root / "gtFine" / split / img.parent.name / f"{stem}{LABEL_SUFFIX}"
        train_ids = lab.with_name(f"{stem}{TRAIN_ID_SUFFIX}")
        if lab.is_file():
            out.append(Sample(img, lab, stem, decode))
        elif train_ids.is_file():   # made by cityscapesscripts' createTrainIdLabelImgs: already 0..18 / 255
            out.append(Sample(img, train_ids, stem, TRAIN_IDS))
        else:
            raise PixelsegError(f"{img}: has no label {lab}; gtFine must mirror leftImg8bit "
                                f"(<city>/<stem>{LABEL_SUFFIX}; the *_color.png files are not labels)")
    if not out:
        raise PixelsegError(f"{img_dir}: no <city>/*{IMAGE_SUFFIX} images; the Cityscapes layout is "
                            f"leftImg8bit/{split}/<city>/<stem>{IMAGE_SUFFIX}")
    return out


def open(root: Path, val_fraction: float = 0.1) -> DatasetIndex:  # noqa: A001 - the format-module contract
    require_dir(root / "leftImg8bit", "cityscapes", "image")
    require_dir(root / "gtFine", "cityscapes", "fine annotation")
    require_dir(root / "leftImg8bit" / "train", "cityscapes", "training image")
    decode = label_map()
    splits = {s: _split(root, s, s != "test", decode) for s in ("train", "val", "test")}
    return make_index(root, "cityscapes", classes(), splits, val_fraction)
