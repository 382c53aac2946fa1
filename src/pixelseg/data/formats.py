"""Finding a dataset on disk: which layout it is, which image goes with which mask, and the class table.

Layouts (`FORMATS`; each reader lives in its own module, this one holds the two simplest):
  folder     ROOT/classes.json, ROOT/{train,val[,test]}/{images,masks}/<stem>.*  (index masks)
  keras      ROOT/{train,val[,test]}_images/ and ROOT/{train,val[,test]}_segmentation/ (keras_segmentation)
  colormask  the folder layout with color-coded masks and a color table (data/colormask.py)
  voc, cityscapes, ade20k, camvid, coco, labelme: the layouts those datasets/tools ship (data/<name>.py)
Only paths are listed here; pixels are decoded lazily by the dataset, in the loader workers. A format whose
masks are not plain class indices attaches a decoder (data/labels.py) to each Sample.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pixelseg.data.classes import ClassTable
from pixelseg.data.io import IMAGE_EXTS
from pixelseg.data.index import SPLITS, DatasetIndex, Sample  # noqa: F401  (re-exported until data/ imports index)
from pixelseg.errors import PixelsegError

# name -> module holding detect(root) -> bool and open(root, val_fraction) -> DatasetIndex; auto-detection
# tries them in this order (the specific layouts before the generic ones)
FORMATS = {"folder": "", "keras": "", "colormask": "pixelseg.data.colormask", "voc": "pixelseg.data.voc",
           "cityscapes": "pixelseg.data.cityscapes", "ade20k": "pixelseg.data.ade20k", "camvid": "pixelseg.data.camvid",
           "camvid11": "pixelseg.data.camvid", "coco": "pixelseg.data.coco", "labelme": "pixelseg.data.labelme"}
# formats that are another one read with an option: named, so that the choice travels wherever the format name
# does (data.format in config.yaml, --format, the run's report) and is never detected, only asked for
VARIANTS = {"camvid11": {"classes": 11}}
LAYOUTS = {
    "folder": "ROOT/{train,val[,test]}/{images,masks}/<stem>.* (index masks; classes.json 'values'/'ignore_values' "
              "map stored values such as 0/255)",
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


def _dirs(root: Path, split: str, fmt: str) -> tuple[Path, Path]:
    if fmt == "folder":
        return root / split / "images", root / split / "masks"
    return root / f"{split}_images", root / f"{split}_segmentation"


def detect_format(root: Path) -> str:
    if (root / "train" / "images").is_dir():
        from pixelseg.data.colormask import has_color_masks
        return "colormask" if has_color_masks(root) else "folder"
    if (root / "train_images").is_dir():
        return "keras"
    if root.is_dir():
        for name, module in FORMATS.items():
            if module and name != "colormask" and name not in VARIANTS and importlib.import_module(module).detect(root):
                return name
    if not root.exists():
        raise PixelsegError(f"{root}: dataset folder not found; check --data (make one with `pixelseg data synth --out {root}`)")
    if not root.is_dir():
        raise PixelsegError(f"{root}: is a file, not a dataset folder; give the folder that holds train/images and train/masks")
    raise PixelsegError(
        f"{root}: no known dataset layout; expected {root}/train/images + {root}/train/masks (folder format), "
        f"{root}/train_images + {root}/train_segmentation (keras_segmentation), or a VOC, Cityscapes, ADE20K, CamVid, "
        "COCO or LabelMe layout (`pixelseg verify-dataset --help` lists them)")


def _list_images(d: Path, what: str = "images") -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            if p.stem in out:
                raise PixelsegError(f"{p}: two {what} share the stem '{p.stem}' ({out[p.stem].name}); rename one")
            out[p.stem] = p
    return out


def _pair(root: Path, split: str, fmt: str, problems: list[str] | None = None) -> list[Sample] | None:
    """Image/mask pairs of one split by file stem. With a `problems` list, unpaired files are recorded there
    and skipped (the doctor's view); without, the first one is an error."""
    img_dir, mask_dir = _dirs(root, split, fmt)
    if not img_dir.is_dir():
        return None
    images = _list_images(img_dir)
    if not images:
        raise PixelsegError(f"{img_dir}: no images ({', '.join(IMAGE_EXTS)}); add images or remove the folder")
    if not mask_dir.is_dir():
        if split == "test":
            return [Sample(p, None, s) for s, p in images.items()]
        raise PixelsegError(f"{mask_dir}: mask folder not found; put one <stem>.png mask per image of {img_dir} there")
    masks = _list_images(mask_dir, "masks")
    missing = [images[s] for s in images if s not in masks]
    orphans = [masks[s] for s in masks if s not in images]
    if problems is not None:
        problems += [f"{p}: has no mask {mask_dir / (p.stem + '.png')}; add the mask or remove the image" for p in missing]
        problems += [f"{p}: mask without an image in {img_dir}; add the image or remove the mask" for p in orphans]
        return [Sample(images[s], masks[s], s) for s in images if s in masks]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PixelsegError(f"{missing[0]}: has no mask {mask_dir / (missing[0].stem + '.png')}{more}; add the mask or remove the image")
    if orphans:
        more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
        raise PixelsegError(f"{orphans[0]}: mask without an image in {img_dir}{more}; add the image or remove the mask")
    return [Sample(images[s], masks[s], s) for s in images]


def _holdout(samples: list[Sample], fraction: float) -> tuple[list[Sample], list[Sample]]:
    """Deterministic split by a hash of the stem: stable when files are added, independent of order."""
    def h(s: Sample) -> float:
        return int(hashlib.sha1(s.stem.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    val = [s for s in samples if h(s) < fraction]
    if not val and len(samples) >= 2:
        val = [min(samples, key=h)]
    keep = set(id(s) for s in val)
    return [s for s in samples if id(s) not in keep], val


def _derive_classes(root: Path, samples: list[Sample], color_channel: int | None) -> ClassTable:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from pixelseg.data.labels import load_mask

    def values(s: Sample):
        try:
            return np.unique(load_mask(s, color_channel))
        except PixelsegError:
            return np.zeros(0, np.int64)  # an unreadable mask is reported, with its name, by the mask scan

    with ThreadPoolExecutor(4) as ex:
        found = sorted(set(int(v) for vals in ex.map(values, samples) for v in vals) - {255})
    if not found:
        raise PixelsegError(f"{root}: every mask is all ignore (255); label some pixels, or if 255 marks the foreground "
                            f"of a binary task write {root / 'classes.json'} with "
                            '{"names": ["background", "foreground"], "values": [0, 255]}')
    if found == [0]:
        # the classic 0/255 binary mask: with 255 = ignore the model would learn "everything is background"
        raise PixelsegError(f"{root}: masks hold only 0 and 255, and 255 is the ignore index; if 255 marks the foreground "
                            f"write {root / 'classes.json'} with "
                            '{"names": ["background", "foreground"], "values": [0, 255]}')
    return ClassTable.derive(max(found) + 1)


def read_classes_json(path: Path) -> tuple[ClassTable, Callable | None]:
    """classes.json, and a decoder when its optional keys say the masks do not store class indices:
    'values' lists the stored pixel value of each class (0/255 binary masks: [0, 255]; 1..N: [1, 2, ...]) and
    'ignore_values' the stored values that mean "unlabelled" (e.g. [0]). Any other stored value is an error,
    except the ignore index itself."""
    from pixelseg.data.labels import value_map

    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PixelsegError(f"{path}: not valid JSON ({e}); fix the file or delete it to use class_0, class_1, ...") from None
    if isinstance(d, dict) and "ignore_colors" in d:
        raise PixelsegError(f"{path}: has 'ignore_colors', a color table: read these color-coded masks with "
                            "--format colormask")
    values = d.pop("values", None) if isinstance(d, dict) else None
    ignore_values = d.pop("ignore_values", []) if isinstance(d, dict) else []
    classes = ClassTable.from_dict(d, str(path))
    if values is None and not ignore_values:
        return classes, None
    values = list(range(classes.num_classes)) if values is None else values

    def stored(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535
    if not (isinstance(values, list) and len(values) == classes.num_classes and all(stored(v) for v in values)
            and len(set(values)) == len(values)):
        raise PixelsegError(f"{path}: 'values' must list one distinct stored pixel value (0..65535) per class name, "
                            "e.g. [0, 255] for background/foreground")
    if not (isinstance(ignore_values, list) and all(stored(v) for v in ignore_values)) or set(ignore_values) & set(values):
        raise PixelsegError(f"{path}: 'ignore_values' must list stored pixel values (0..65535) that are not in 'values', "
                            "e.g. [0] when 0 marks unlabelled pixels")
    pairs = {v: i for i, v in enumerate(values)}
    pairs.update({v: classes.ignore_index for v in ignore_values})
    pairs.setdefault(classes.ignore_index, classes.ignore_index)
    return classes, value_map(pairs, f"the stored values {sorted(pairs)} that {path} lists")


def open_dataset(root: str | Path, format: str = "auto", val_fraction: float = 0.1, strict: bool = True) -> DatasetIndex:
    """The dataset at `root` as an index of paths. strict=False (the doctor) records unpaired files of the
    folder-type layouts in index.problems instead of stopping at the first; other errors still raise."""
    root = Path(root)
    if format != "auto" and format not in FORMATS:
        raise PixelsegError(f"unknown dataset format '{format}'; valid: auto, {', '.join(FORMATS)}")
    if format != "auto" and not root.is_dir():
        detect_format(root)  # the not-found / is-a-file messages
    fmt = detect_format(root) if format == "auto" else format
    if FORMATS[fmt]:
        if fmt == "colormask":
            return importlib.import_module(FORMATS[fmt]).open(root, val_fraction, strict)
        return importlib.import_module(FORMATS[fmt]).open(root, val_fraction, **VARIANTS.get(fmt, {}))
    if format != "auto" and not _dirs(root, "train", fmt)[0].is_dir():
        raise PixelsegError(f"{_dirs(root, 'train', fmt)[0]}: not found; {root} is not in the '{fmt}' layout")
    splits = {}
    problems: list[str] | None = None if strict else []
    for split in SPLITS:
        pairs = _pair(root, split, fmt, problems)
        if pairs is not None:
            splits[split] = pairs
    notes = []
    if "train" not in splits:
        raise PixelsegError(f"{_dirs(root, 'train', fmt)[0]}: training images not found")
    if "val" not in splits:
        splits["train"], splits["val"] = _holdout(splits["train"], val_fraction)
        notes.append(f"no val split: held out {len(splits['val'])} of the train images ({val_fraction:.0%}, by a hash of "
                     "the file name) for validation")
    color_channel = 2 if fmt == "keras" else None
    cj = root / "classes.json"
    if cj.exists():
        classes, decode = read_classes_json(cj)
        if decode is not None:
            if fmt == "keras":
                raise PixelsegError(f"{cj}: 'values' is not supported with the keras layout (its index is the blue "
                                    "channel); remove the key or convert the masks")
            splits = {k: [Sample(s.image, s.mask, s.stem, decode if s.mask else None) for s in v] for k, v in splits.items()}
    else:
        classes = _derive_classes(root, splits["train"] + splits["val"], color_channel)
        notes.append(f"no classes.json: mask values 0..{classes.num_classes - 1} named class_0..class_{classes.num_classes - 1}, "
                     f"255 = ignore; write {cj} to name and color them")
    return DatasetIndex(root, fmt, classes, splits, color_channel, notes, problems or [])


def write_classes_json(root: str | Path, classes: ClassTable) -> None:
    from pixelseg.fileio import write_json
    write_json(Path(root) / "classes.json", classes.to_dict())




def make_index(root: Path, fmt: str, classes: ClassTable, splits: dict[str, list[Sample]], val_fraction: float,
               notes: list[str] | None = None) -> DatasetIndex:
    """The shared end of every reader: empty splits dropped, a val split held out of train when there is none."""
    splits = {k: v for k, v in splits.items() if v}
    notes = list(notes or [])
    if not splits.get("train"):
        raise PixelsegError(f"{root}: no labelled training images found in the '{fmt}' layout; expected {LAYOUTS[fmt]}")
    if not splits.get("val"):
        splits["train"], splits["val"] = _holdout(splits["train"], val_fraction)
        notes.append(f"no val split: held out {len(splits['val'])} of the train images ({val_fraction:.0%}, by a hash of "
                     "the file name) for validation")
    return DatasetIndex(root, fmt, classes, splits, None, notes)


def require_dir(path: Path, fmt: str, what: str) -> Path:
    if not path.is_dir():
        raise PixelsegError(f"{path}: {what} folder not found; the '{fmt}' layout is {LAYOUTS[fmt]}")
    return path
