"""Dataset checks: pairing, decodability, sizes, mask values, per-class pixel counts.

`scan_split` reads every mask (and, for verify-dataset, every image) in a thread pool — PIL's decoders
release the GIL — and collects problems instead of stopping at the first, so one run lists them all.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixelseg.data.geotiff import georeference_problem
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.io import image_size, read_image, stored_size, to_channels
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


MOSTLY_NODATA = 0.95     # an image over 95 % nodata is worth a warning; 100 % is a problem


def _named(paths: list, most: int = 3) -> str:
    more = f" and {len(paths) - most} more" if len(paths) > most else ""
    return ", ".join(str(p) for p in paths[:most]) + more


def nodata_findings(shares: list[tuple[Path, float]]) -> tuple[list[str], list[str]]:
    """(problems, warnings) for rasters' nodata shares (geotiff.nodata_share): an image whose every pixel is nodata
    teaches nothing and its mask's pixels are noise (a problem, one line per image); images mostly nodata, one
    warning line for all of them."""
    empty = [p for p, share in shares if share >= 1.0]
    problems = [f"{p}: every pixel is nodata; the image teaches nothing and its mask's labels are noise: remove it "
                "(with its mask) or fix its nodata value (gdal_edit.py -a_nodata / -unsetnodata)" for p in empty]
    mostly = sorted(((p, share) for p, share in shares if MOSTLY_NODATA < share < 1.0), key=lambda x: -x[1])
    warnings = [f"{len(mostly)} image(s) are over {MOSTLY_NODATA:.0%} nodata, e.g. {mostly[0][0]} "
                f"({min(mostly[0][1], 0.999):.1%}): they teach little; crop them to their data or drop them"] if mostly else []
    return problems, warnings


def convertible(channels: int, to: int) -> bool:
    """Whether training turns a `channels`-channel image into `to` (io.to_channels itself, on one pixel, so the two
    never disagree): gray, RGB and RGBA convert among themselves; any other count only to itself."""
    try:
        to_channels(np.zeros((1, 1, channels), np.uint8), to)
    except ValueError:
        return False
    return True


def channel_findings(found: list[tuple[Path, int]]) -> tuple[list[str], list[str]]:
    """(problems, warnings) when images' channel counts (bands of a raster) differ. Training takes the most common
    count (engine/recipe.py, unless --in-channels) and converts every image to it (io.to_channels): a count it
    cannot convert (200 bands among RGB, RGB among 12 bands) is refused mid-training, so it is a problem here, as is
    a 4th band that is data (near-infrared, not alpha) which training would fill with 255 in the images without one.
    Gray among RGB, or an RGBA image or a 4th band dropped among 3-band images, convert as documented: a warning.
    Only the 4-band rasters involved have their header read again (whether band 4 is declared alpha)."""
    from collections import Counter

    from pixelseg.data import geotiff

    def alpha(p) -> bool:       # a PNG's 4th channel is alpha; a raster's only when it says so
        return geotiff.last_band_is_alpha(p) if geotiff.is_raster(p) else True

    by: dict[int, list[Path]] = {}
    for p, c in found:
        by.setdefault(c, []).append(p)
    if len(by) < 2:
        return [], []
    counts = Counter({c: len(ps) for c, ps in by.items()})
    m = max(counts, key=lambda c: (counts[c], c))
    summary = ", ".join(f"{c} channel(s) in {n} image(s)" for c, n in counts.most_common())
    problems, warnings = [], []
    for c, paths in sorted(by.items()):
        if c == m:
            continue
        head = f"{_named(paths)}: {c} channel(s) where most images have {m} ({summary})"
        if not convertible(c, m):
            if c > m:
                bands = " ".join(f"-b {i}" for i in range(1, m + 1)) if m <= 4 else f"-b 1 ... -b {m}"
                fix = (f"keep the {m} band(s) the model takes (gdal_translate {bands} IN.tif OUT.tif) or remove "
                       f"{'them' if len(paths) > 1 else 'it'} (with the mask)")
            else:
                fix = (f"give {'them' if len(paths) > 1 else 'it'} the {m} bands the other images have, or remove "
                       f"{'them' if len(paths) > 1 else 'it'} (with the mask)")
            problems.append(f"{head}; training takes {m} and cannot convert {c}: {fix}; or, if every image should have "
                            f"{c}, give them all {c} (training then takes {c}: --in-channels {c})")
        elif m == 4 and not alpha(by[m][0]):
            problems.append(f"{head}; their 4th band is data ({by[m][0]} does not declare it alpha), and training "
                            f"would fill it with 255 (opaque alpha) in the {c}-channel image(s): give them all 4 bands "
                            "or remove them (with the mask)")
        elif c == 4 and m == 3 and not alpha(paths[0]):
            warnings.append(f"{head}; training reads bands 1-3 and drops the 4th ({paths[0]} does not declare it "
                            "alpha: near-infrared?); to use it, give every image 4 bands")
        else:
            how = {(1, 3): "gray repeated", (4, 3): "alpha dropped", (1, 4): "gray repeated, an opaque alpha added",
                   (3, 4): "an opaque alpha added", (3, 1): "RGB to gray", (4, 1): "alpha dropped, RGB to gray"}[c, m]
            warnings.append(f"{head}; training converts them to {m} ({how}), which is fine if intended")
    return problems, warnings
