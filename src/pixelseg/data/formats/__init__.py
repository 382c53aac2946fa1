"""Finding a dataset on disk: which layout it is, and the reader that lists its images, masks and classes.

Layouts (`FORMATS`, in the order auto-detection tries them: the specific layouts before the generic ones):
  folder     ROOT/classes.json, ROOT/{train,val[,test]}/{images,masks}/<stem>.* or ROOT/{images,masks}/<stem>.*
             with no splits (index masks; data/formats/folder.py)
  keras      ROOT/{train,val[,test]}_images/ and ROOT/{train,val[,test]}_segmentation/ (formats/folder.py)
  colormask  the folder layout with color-coded masks and a color table (formats/colormask.py)
  voc, cityscapes, ade20k, camvid, coco, labelme: the layouts those datasets/tools ship (formats/<name>.py)
  pairs      ROOT/<stem>.* next to ROOT/<stem>_mask.png (formats/pairs.py)
Only paths are listed here; pixels are decoded lazily by the dataset, in the loader workers. A format whose
masks are not plain class indices attaches a decoder (data/labels.py) to each Sample.

Every reader module registers itself below, by an explicit import (as models/__init__.py does): a reader
that fails to register is an import error at once, never a silently missing format. Readers import only
data/formats/layout.py and the modules under it; nothing they import comes back here.
"""
from __future__ import annotations

from pathlib import Path

from pixelseg.data.formats import ade20k, camvid, cityscapes, coco, colormask, folder, labelme, pairs, voc
from pixelseg.data.index import DatasetIndex
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry

READERS = Registry("dataset format")
folder.register(READERS)
colormask.register(READERS)
voc.register(READERS)
cityscapes.register(READERS)
ade20k.register(READERS)
camvid.register(READERS)
coco.register(READERS)
labelme.register(READERS)
pairs.register(READERS)      # the most generic layout: tried last

FORMATS = tuple(entry.name for entry in READERS)   # registration order: the order detection tries them
# formats that are another one read with an option: named, so that the choice travels wherever the format name
# does (data.format in config.yaml, --format, the run's report) and is never detected, only asked for
VARIANTS = tuple(e.name for e in READERS if e.info.get("detect") is None)


def detect_format(root: Path) -> str:
    if root.is_dir():
        for entry in READERS:
            detect = entry.info.get("detect")
            if detect is not None and detect(root):
                return entry.name
    if not root.exists():
        raise PixelsegError(f"{root}: dataset folder not found; check --data (make one with `pixelseg data synth --out {root}`)")
    if not root.is_dir():
        raise PixelsegError(f"{root}: is a file, not a dataset folder; give the folder that holds images/ and masks/")
    raise PixelsegError(
        f"{root}: no known dataset layout; expected {root}/images + {root}/masks, or {root}/train/images + "
        f"{root}/train/masks (folder format), images next to their <stem>_mask.png masks, "
        f"{root}/train_images + {root}/train_segmentation (keras_segmentation), or a VOC, Cityscapes, ADE20K, CamVid, "
        "COCO or LabelMe layout (`pixelseg verify-dataset --help` lists them)")


def open_dataset(root: str | Path, format: str = "auto", val_fraction: float = 0.1, strict: bool = True) -> DatasetIndex:
    """The dataset at `root` as an index of paths. strict=False (the doctor) records unpaired files of the
    folder-type layouts in index.problems instead of stopping at the first; other errors still raise."""
    root = Path(root)
    if format != "auto" and format not in READERS:
        raise PixelsegError(f"unknown dataset format '{format}'; valid: auto, {', '.join(FORMATS)}")
    if format != "auto" and not root.is_dir():
        detect_format(root)  # the not-found / is-a-file messages
    entry = READERS.get(detect_format(root) if format == "auto" else format)
    if entry.info.get("strict"):
        return entry.builder(root, val_fraction, strict)
    return entry.builder(root, val_fraction)
