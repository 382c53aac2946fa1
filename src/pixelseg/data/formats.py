"""Finding a dataset on disk: which layout it is, which image goes with which mask, and the class table.

Layouts read here (the dataset-formats issue adds VOC, Cityscapes, ADE20K, ...):
  folder  ROOT/classes.json, ROOT/{train,val[,test]}/{images,masks}/<stem>.*
  keras   ROOT/{train,val[,test]}_images/ and ROOT/{train,val[,test]}_segmentation/ (keras_segmentation)
Only paths are listed here; pixels are decoded lazily by the dataset, in the loader workers.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pixelseg.data.classes import ClassTable
from pixelseg.data.io import IMAGE_EXTS
from pixelseg.errors import PixelsegError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None
    stem: str


@dataclass
class DatasetIndex:
    root: Path
    format: str
    classes: ClassTable
    splits: dict[str, list[Sample]]
    mask_color_channel: int | None = None   # keras_segmentation reads the index from cv2's first (blue) channel
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits or not self.splits[name]:
            have = ", ".join(s for s in self.splits if self.splits[s]) or "none"
            raise PixelsegError(f"{self.root}: has no '{name}' split (splits found: {have}); pick one with --split")
        return self.splits[name]


def _dirs(root: Path, split: str, fmt: str) -> tuple[Path, Path]:
    if fmt == "folder":
        return root / split / "images", root / split / "masks"
    return root / f"{split}_images", root / f"{split}_segmentation"


def detect_format(root: Path) -> str:
    if (root / "train" / "images").is_dir():
        return "folder"
    if (root / "train_images").is_dir():
        return "keras"
    if not root.exists():
        raise PixelsegError(f"{root}: dataset folder not found; check --data (make one with `pixelseg data synth --out {root}`)")
    if not root.is_dir():
        raise PixelsegError(f"{root}: is a file, not a dataset folder; give the folder that holds train/images and train/masks")
    raise PixelsegError(
        f"{root}: no known dataset layout; expected {root}/train/images + {root}/train/masks (folder format) "
        f"or {root}/train_images + {root}/train_segmentation (keras_segmentation)")


def _list_images(d: Path, what: str = "images") -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            if p.stem in out:
                raise PixelsegError(f"{p}: two {what} share the stem '{p.stem}' ({out[p.stem].name}); rename one")
            out[p.stem] = p
    return out


def _pair(root: Path, split: str, fmt: str) -> list[Sample] | None:
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
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PixelsegError(f"{missing[0]}: has no mask {mask_dir / (missing[0].stem + '.png')}{more}; add the mask or remove the image")
    orphans = [masks[s] for s in masks if s not in images]
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

    from pixelseg.data.io import read_mask

    def values(s: Sample):
        return np.unique(read_mask(s.mask, color_channel))

    with ThreadPoolExecutor(4) as ex:
        found = sorted(set(int(v) for vals in ex.map(values, samples) for v in vals) - {255})
    if not found:
        raise PixelsegError(f"{root}: every mask is all ignore (255); label some pixels")
    return ClassTable.derive(max(found) + 1)


def open_dataset(root: str | Path, format: str = "auto", val_fraction: float = 0.1) -> DatasetIndex:
    root = Path(root)
    fmt = detect_format(root) if format == "auto" else format
    if fmt not in ("folder", "keras"):
        raise PixelsegError(f"unknown dataset format '{fmt}'; valid: auto, folder, keras")
    if format != "auto" and not _dirs(root, "train", fmt)[0].is_dir():
        raise PixelsegError(f"{_dirs(root, 'train', fmt)[0]}: not found; {root} is not in the '{fmt}' layout")
    splits = {}
    for split in SPLITS:
        pairs = _pair(root, split, fmt)
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
        classes = ClassTable.from_json(cj)
    else:
        classes = _derive_classes(root, splits["train"] + splits["val"], color_channel)
        notes.append(f"no classes.json: mask values 0..{classes.num_classes - 1} named class_0..class_{classes.num_classes - 1}, "
                     f"255 = ignore; write {cj} to name and color them")
    return DatasetIndex(root, fmt, classes, splits, color_channel, notes)


def write_classes_json(root: str | Path, classes: ClassTable) -> None:
    from pixelseg.fileio import write_json
    write_json(Path(root) / "classes.json", classes.to_dict())


