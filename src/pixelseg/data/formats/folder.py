"""The two simplest layouts, read without a format module of their own name:

    folder  ROOT/classes.json, ROOT/{train,val[,test]}/{images,masks}/<stem>.*  (index masks)
    keras   ROOT/{train,val[,test]}_images/ and ROOT/{train,val[,test]}_segmentation/ (keras_segmentation)

and classes.json, which both read (its optional 'values'/'ignore_values' keys attach a decoder when the
masks do not store class indices).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pixelseg.data.classes import ClassTable
from pixelseg.data.formats.colormask import has_color_masks
from pixelseg.data.index import SPLITS, DatasetIndex, Sample
from pixelseg.data.formats.layout import holdout, holdout_note, is_unsplit, pair_split, split_dirs
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry


def register(formats: Registry) -> None:
    formats.register("folder", detect=detect_folder, strict=True)(partial(open_folder, fmt="folder"))
    formats.register("keras", detect=detect_keras, strict=True)(partial(open_folder, fmt="keras"))


def detect_folder(root: Path) -> bool:
    return ((root / "train" / "images").is_dir() or is_unsplit(root)) and not has_color_masks(root)


def detect_keras(root: Path) -> bool:
    return (root / "train_images").is_dir()


def derive_classes(root: Path, samples: list[Sample], color_channel: int | None) -> ClassTable:
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


def open_folder(root: Path, val_fraction: float = 0.1, strict: bool = True, *, fmt: str = "folder") -> DatasetIndex:
    """strict=False (the doctor) records unpaired files in index.problems instead of stopping at the first."""
    if not split_dirs(root, "train", fmt)[0].is_dir():
        raise PixelsegError(f"{split_dirs(root, 'train', fmt)[0]}: not found; {root} is not in the '{fmt}' layout")
    splits = {}
    problems: list[str] | None = None if strict else []
    for split in SPLITS:
        pairs = pair_split(root, split, fmt, problems)
        if pairs is not None:
            splits[split] = pairs
    notes = []
    if "val" not in splits:
        splits["train"], splits["val"] = holdout(splits["train"], val_fraction)
        notes.append(holdout_note(splits["val"], val_fraction))
    color_channel = 2 if fmt == "keras" else None
    splits, classes = read_classes(root, splits, notes, color_channel, fmt)
    return DatasetIndex(root, fmt, classes, splits, color_channel, notes, problems or [])


def read_classes(root: Path, splits: dict[str, list[Sample]], notes: list[str], color_channel: int | None,
                 fmt: str) -> tuple[dict[str, list[Sample]], ClassTable]:
    """The class table of an index-mask layout: ROOT/classes.json (attaching its value decoder to every mask),
    or derived from the values the masks hold, with a note."""
    cj = root / "classes.json"
    if cj.exists():
        classes, decode = read_classes_json(cj)
        if decode is not None:
            if fmt == "keras":
                raise PixelsegError(f"{cj}: 'values' is not supported with the keras layout (its index is the blue "
                                    "channel); remove the key or convert the masks")
            splits = {k: [Sample(s.image, s.mask, s.stem, decode if s.mask else None) for s in v] for k, v in splits.items()}
    else:
        classes = derive_classes(root, splits["train"] + splits["val"], color_channel)
        notes.append(f"no classes.json: mask values 0..{classes.num_classes - 1} named class_0..class_{classes.num_classes - 1}, "
                     f"255 = ignore; write {cj} to name and color them")
    return splits, classes


def write_classes_json(root: str | Path, classes: ClassTable) -> None:
    from pixelseg.fileio import write_json
    write_json(Path(root) / "classes.json", classes.to_dict())
