"""Dataset checks: pairing, decodability, sizes, mask values, per-class pixel counts.

`scan_split` reads every mask (and, for verify-dataset, every image) in a thread pool — PIL's decoders
release the GIL — and collects problems instead of stopping at the first, so one run lists them all.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pixelseg.data.geotiff import georeference_problem
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.io import image_size, read_image, stored_size
from pixelseg.data.labels import load_mask
from pixelseg.errors import PixelsegError


@dataclass
class SplitReport:
    name: str
    images: int = 0
    counts: np.ndarray | None = None           # pixels per class index (+ ignore at the end)
    problems: list[str] = field(default_factory=list)


def check_mask(mask: np.ndarray, image_hw: tuple[int, int], num_classes: int, ignore_index: int,
               s: Sample) -> np.ndarray:
    """The one check of a mask against its image and the class table, shared by the up-front scan and the
    datasets. Raises PixelsegError naming the file; returns pixels per class with the ignore count last."""
    h, w = image_hw
    if mask.shape != (h, w):
        found = f"{s.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {s.image.name} is {w}x{h}"
        raise PixelsegError(found + (_exif_hint(s, mask.shape) or "; masks must match their images pixel for pixel "
                                     "(re-export the mask at the image's size)"))
    top = np.iinfo(mask.dtype).max if mask.dtype.kind in "ui" else 65535
    if ignore_index > top:
        raise PixelsegError(f"{s.mask}: ignore_index {ignore_index} cannot occur in a {mask.dtype.itemsize * 8}-bit mask "
                            f"(values 0..{top}), so no pixel would be ignored; set 'ignore_index' in classes.json to a "
                            "value the masks store (255 is the convention)")
    counts = np.bincount(mask.ravel().astype(np.int64), minlength=max(num_classes, ignore_index + 1))
    bad = [int(v) for v in np.nonzero(counts)[0] if v >= num_classes and v != ignore_index]
    if bad:
        lossy = (" (masks must be PNG: JPEG compression is lossy and invents values at edges; save the masks as PNG)"
                 if s.mask is not None and s.mask.suffix.lower() in (".jpg", ".jpeg") else "")
        raise PixelsegError(f"{s.mask}: mask value(s) {bad[:5]} are not class indices 0..{num_classes - 1} nor the ignore "
                            f"index {ignore_index}{lossy}; fix the mask or add the classes to classes.json")
    return np.append(counts[:num_classes], counts[ignore_index] if ignore_index < len(counts) else 0)


def _exif_hint(s: Sample, mask_hw) -> str:
    """Why a mask and its image disagree when the image carries an EXIF orientation: images are read
    upright (EXIF applied, as photo tools show them); a mask drawn on the stored pixels is turned."""
    try:
        stored, turned = stored_size(s.image)
    except PixelsegError:
        return ""
    if not turned:
        return ""
    matches = ", which the mask matches" if tuple(mask_hw) == tuple(stored) else ""
    return (f" after its EXIF orientation (stored {stored[1]}x{stored[0]}{matches}); pixelseg reads images upright, as "
            "photo tools show them: rotate the mask to the upright picture, or save the image without the EXIF "
            "orientation tag")


def all_ignore(index: DatasetIndex, counts: np.ndarray, split: str = "train") -> str | None:
    """The message for a split whose masks label no pixel at all (counts: per class, ignore last)."""
    if counts[:-1].sum() > 0 or counts[-1] == 0:
        return None
    return (f"{index.root}: every {split} mask is all ignore ({index.classes.ignore_index}); there is nothing to learn — "
            "label some pixels (or fix 'ignore_index' / 'values' in classes.json if the wrong value is ignored)")


def _check_one(s: Sample, num_classes: int, ignore_index: int, color_channel, decode_images: bool):
    try:
        mask = load_mask(s, color_channel)
        hw = read_image(s.image).shape[:2] if decode_images else image_size(s.image)
        counts = check_mask(mask, hw, num_classes, ignore_index, s)
        return counts, georeference_problem(s.image, s.mask)
    except PixelsegError as e:
        return None, str(e)


def scan_split(index: DatasetIndex, split: str, decode_images: bool = False, workers: int = 4) -> SplitReport:
    samples = [s for s in index.splits[split] if s.mask is not None]
    k, ign = index.classes.num_classes, index.classes.ignore_index
    rep = SplitReport(split, len(samples), np.zeros(k + 1, np.int64))
    with ThreadPoolExecutor(workers) as ex:
        for counts, problem in ex.map(lambda s: _check_one(s, k, ign, index.mask_color_channel, decode_images), samples):
            if problem:
                rep.problems.append(problem)
            else:
                rep.counts += counts
    return rep


def require_clean(index: DatasetIndex, splits=("train", "val")) -> dict[str, SplitReport]:
    """What training runs before its first step: every mask read once; the first problem stops it."""
    reports = {}
    for split in splits:
        rep = scan_split(index, split)
        if rep.problems:
            more = f" ({len(rep.problems) - 1} more problem(s): run `pixelseg verify-dataset {index.root}`)" if len(rep.problems) > 1 else ""
            raise PixelsegError(rep.problems[0] + more)
        empty = all_ignore(index, rep.counts, split) if split == "train" else None
        if empty:
            raise PixelsegError(empty)
        reports[split] = rep
    return reports
