"""The dataset doctor behind `pixelseg verify-dataset`: one pass over every image and mask, then a report.

Problems (exit 1): unpaired files, undecodable images or masks, mask/image size mismatches, mask values
that are neither a class nor the ignore index, colors a color table does not list (each with its pixel
count and a file where it appears), the same image in two splits (perceptual hash: a leak that inflates
validation scores), channel counts training cannot reconcile (a 200-band GeoTIFF among RGB images), GeoTIFFs
whose every pixel is nodata.
Warnings: masks that are all ignore, images mostly nodata, gray among RGB images (converted), classes present
in val but never in train, classes never seen.
Statistics: per split and class, pixel share and number of images containing the class; median
frequency balancing class weights (data/sampling.py); image size and aspect ratio spread and a suggested
--image-size.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pixelseg.data.tools.checks import all_ignore, channel_findings, check_mask, nodata_findings
from pixelseg.data.formats import open_dataset
from pixelseg.data.geotiff import georeference_problem, nodata_share
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.io import read_image
from pixelseg.data.labels import UnknownColorsError, load_mask
from pixelseg.data.objects import object_sizes
from pixelseg.errors import PixelsegError

DUPLICATE_BITS = 6          # perceptual hashes this close (of 64 bits) are the same picture
MAX_SUGGESTED_SIDE = 1024   # a suggested --image-size never exceeds this (memory; inference tiles larger images)


def phash(image: np.ndarray) -> int:
    """64-bit perceptual hash (DCT of a 32x32 gray thumbnail, low 8x8 frequencies against their median).
    Written here because neither `imagehash` nor OpenCV's contrib img_hash is a dependency; it is the
    standard pHash, robust to re-encoding, resizing and small color changes."""
    gray = image[:, :, 0] if image.shape[2] == 1 else cv2.cvtColor(image[:, :, :3], cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low[1:])   # the DC term (overall brightness) is left out of the median
    return int("".join("1" if b else "0" for b in bits), 2)


@dataclass
class Facts:
    split: str
    sample: Sample
    hw: tuple[int, int] | None = None
    hash: int | None = None
    counts: np.ndarray | None = None      # pixels per class, ignore last
    problem: str | None = None
    colors: dict | None = None            # unknown colors of a color mask: (r, g, b) -> pixels
    channels: int | None = None           # of the decoded image, before any conversion (a raster's band count)
    nodata: float | None = None           # share of nodata pixels of a raster that declares nodata


@dataclass
class SplitStats:
    images: int
    labelled: int
    pixels: np.ndarray                    # per class + ignore
    images_with: np.ndarray               # per class: images where it appears
    all_ignore: list[str] = field(default_factory=list)
    background_only: int = 0              # masks with class 0 only (common, worth knowing, not a problem)


@dataclass
class DoctorReport:
    index: DatasetIndex
    splits: dict[str, SplitStats]
    problems: list[str]
    warnings: list[str]
    duplicates: list[tuple[str, str, str, str, int]]   # split a, file a, split b, file b, hash distance
    class_weights: list[float]
    sizes: dict
    suggested_image_size: tuple[int, int]
    objects: dict = field(default_factory=dict)   # object extents per class (data/objects.py) on a train sample

    def to_dict(self) -> dict:
        c = self.index.classes
        return {
            "root": str(self.index.root), "format": self.index.format, "notes": self.index.notes,
            "classes": list(c.names), "ignore_index": c.ignore_index,
            "problems": self.problems, "warnings": self.warnings,
            "splits": {name: {"images": s.images, "labelled": s.labelled,
                              "pixels": {n: int(v) for n, v in zip(list(c.names) + ["ignore"], s.pixels)},
                              "images_with": {n: int(v) for n, v in zip(c.names, s.images_with)},
                              "all_ignore_masks": s.all_ignore, "background_only_masks": s.background_only}
                       for name, s in self.splits.items()},
            "duplicates": [{"a": a, "split_a": sa, "b": b, "split_b": sb, "distance": d}
                           for sa, a, sb, b, d in self.duplicates],
            "class_weights": dict(zip(c.names, self.class_weights)),
            "sizes": self.sizes, "suggested_image_size": list(self.suggested_image_size), "objects": self.objects,
        }


def _examine(split: str, s: Sample, index: DatasetIndex) -> Facts:
    f = Facts(split, s)
    k, ign = index.classes.num_classes, index.classes.ignore_index
    try:
        img = read_image(s.image)
        f.hw, f.hash, f.channels = img.shape[:2], phash(img), img.shape[2]
        f.nodata = nodata_share(s.image)     # header and a decimated dataset mask; None for a non-raster
    except PixelsegError as e:
        f.problem = str(e)
        return f
    if s.mask is None:
        return f
    try:
        f.counts = check_mask(load_mask(s, index.mask_color_channel), f.hw, k, ign, s)
        f.problem = georeference_problem(s.image, s.mask)
    except UnknownColorsError as e:
        f.problem, f.colors = str(e), e.colors
    except PixelsegError as e:
        f.problem = str(e)
    return f


def _near_duplicates(facts: list[Facts]) -> list[tuple[int, int, int]]:
    """Pairs (i, j, distance) of hashes within DUPLICATE_BITS. Candidates come from exact matches of one of
    8 bytes of the hash (two hashes <= 7 bits apart agree on at least one of them), so this stays
    near-linear on large datasets instead of comparing every pair."""
    hashed = [(i, f.hash) for i, f in enumerate(facts) if f.hash is not None]
    bands = [(8 * b, 8 * b + 8) for b in range(8)]
    buckets: dict[tuple[int, int], list[int]] = {}
    for i, h in hashed:
        for b, (lo, hi) in enumerate(bands):
            buckets.setdefault((b, (h >> lo) & ((1 << (hi - lo)) - 1)), []).append(i)
    pairs = set()
    for members in buckets.values():
        if len(members) > 1:
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    i, j = members[x], members[y]
                    d = bin(facts[i].hash ^ facts[j].hash).count("1")
                    if d <= DUPLICATE_BITS:
                        pairs.add((min(i, j), max(i, j), d))
    return sorted(pairs)


def suggest_image_size(hws: list[tuple[int, int]], multiple: int = 32) -> tuple[int, int]:
    """The median image shape, scaled down so its long side is at most MAX_SUGGESTED_SIDE, each side
    rounded to a multiple of 32 (what encoder-decoder models need)."""
    if not hws:
        return (512, 512)
    h, w = (float(np.median([x[0] for x in hws])), float(np.median([x[1] for x in hws])))
    scale = min(1.0, MAX_SUGGESTED_SIDE / max(h, w))
    return tuple(max(multiple, int(round(v * scale / multiple)) * multiple) for v in (h, w))


def _split_stats(index: DatasetIndex, facts: list, problems: list[str], warnings: list[str]):
    """Per split: pixels and images per class, all-ignore and background-only masks; an unlabelled training
    set is a problem, scattered all-ignore masks a warning."""
    c, k = index.classes, index.classes.num_classes
    splits: dict[str, SplitStats] = {}
    per_image: dict[str, list[np.ndarray]] = {}
    for split in index.splits:
        fs = [f for f in facts if f.split == split]
        st = SplitStats(len(fs), 0, np.zeros(k + 1, np.int64), np.zeros(k, np.int64))
        for f in fs:
            if f.counts is None:
                continue
            st.labelled += 1
            st.pixels += f.counts
            st.images_with += f.counts[:k] > 0
            per_image.setdefault(split, []).append(f.counts[:k])
            if f.counts[:k].sum() == 0:
                st.all_ignore.append(str(f.sample.mask))
            elif f.counts[1:k].sum() == 0:
                st.background_only += 1
        splits[split] = st
        empty = all_ignore(index, st.pixels, split) if split == "train" and st.labelled else None
        if empty:
            problems.append(empty)
        elif st.all_ignore:
            warnings.append(f"{split}: {len(st.all_ignore)} mask(s) are all ignore ({c.ignore_index}), e.g. "
                            f"{st.all_ignore[0]}; they teach nothing (check the label convention)")
    return splits, per_image


def diagnose(root: str | Path, format: str = "auto", workers: int = 4) -> DoctorReport:
    from pixelseg.data.sampling import ClassStats, median_frequency_weights

    index = open_dataset(root, format, strict=False)
    c = index.classes
    k = c.num_classes
    jobs = [(split, s) for split, samples in index.splits.items() for s in samples]
    with ThreadPoolExecutor(workers) as ex:
        facts = list(ex.map(lambda job: _examine(job[0], job[1], index), jobs))

    problems = list(index.problems)
    warnings: list[str] = []
    unknown: dict[tuple[int, int, int], list] = {}   # color -> [pixels, first file]
    for f in facts:
        if f.colors:
            for col, n in f.colors.items():
                entry = unknown.setdefault(col, [0, f.sample.mask])
                entry[0] += n
        elif f.problem:
            problems.append(f.problem)
    if unknown:
        listed = "; ".join(f"{list(col)}: {n} px, e.g. in {p}" for col, (n, p) in
                           sorted(unknown.items(), key=lambda kv: -kv[1][0]))
        problems.append(f"{len(unknown)} color(s) not in the class table: {listed}; add them to the classes file "
                        "(or its ignore colors), or re-export the masks without anti-aliasing/JPEG")

    for found in (nodata_findings([(f.sample.image, f.nodata) for f in facts if f.nodata is not None]),
                  channel_findings([(f.sample.image, f.channels) for f in facts if f.channels is not None])):
        problems += found[0]
        warnings += found[1]

    splits, per_image = _split_stats(index, facts, problems, warnings)
    jpeg = [s.mask for _, s in jobs if s.mask is not None and s.mask.suffix.lower() in (".jpg", ".jpeg")]
    if jpeg:
        warnings.append(f"{len(jpeg)} mask(s) are JPEG, e.g. {jpeg[0]}: masks must be PNG (lossless); JPEG compression "
                        "changes label values along every edge — export the masks as PNG")

    if "train" in splits and splits["train"].labelled:
        tr = splits["train"].images_with
        for split in ("val", "test"):
            if split in splits and splits[split].labelled:
                only = [c.names[i] for i in range(k) if splits[split].images_with[i] > 0 and tr[i] == 0]
                if only:
                    warnings.append(f"classes in {split} but never in train: {', '.join(only)}; the model cannot "
                                    "learn them (move some of those images to train)")
        never = [c.names[i] for i in range(k) if all(s.images_with[i] == 0 for s in splits.values())]
        if never:
            hint = ""
            if c.derived and never[0] == c.names[0]:
                # masks storing 1..N with 0 = unlabelled ("reduce zero label"): 0 would become a class
                hint = ("; if stored value 0 means 'unlabelled', write classes.json with \"values\": [1, 2, ...] "
                        "and \"ignore_values\": [0] so 0 is not a class")
            warnings.append(f"classes never present in any mask: {', '.join(never)}{hint}")

    _stray_values(index, splits, facts, problems, warnings)

    dups = []
    for i, j, d in _near_duplicates(facts):
        a, b = facts[i], facts[j]
        if a.split != b.split:
            dups.append((a.split, str(a.sample.image), b.split, str(b.sample.image), d))
    for sa, a, sb, b, d in dups:
        problems.append(f"{b}: the same picture as {a} ({sa} vs {sb}, hash distance {d}); an image in two splits "
                        "inflates the validation score - remove it from one")

    train_rows = per_image.get("train", [])
    weights = median_frequency_weights(ClassStats(np.stack(train_rows))) if train_rows else [1.0] * k

    hws = [f.hw for f in facts if f.hw is not None]
    sizes = {}
    if hws:
        hs, ws = np.array([x[0] for x in hws]), np.array([x[1] for x in hws])
        aspect = ws / hs
        sizes = {"images": len(hws), "height": _spread(hs), "width": _spread(ws),
                 "aspect_w_over_h": {k2: round(float(v), 3) for k2, v in _spread(aspect).items()},
                 "distinct_sizes": len(set(hws))}
        if aspect.max() / aspect.min() > 1.5:
            warnings.append(f"aspect ratios range from {aspect.min():.2f} to {aspect.max():.2f} (W/H): resizing all "
                            "to one size distorts some images; consider tiling or padding")
    return DoctorReport(index, splits, problems, warnings, dups, weights, sizes, suggest_image_size(hws),
                        _objects(index, facts))


RARE_SHARE = 1e-4        # a class in under 0.01 % of the labelled pixels ...
RARE_ONE_FILE = 1e-3     # ... or in one file only and under 0.1 % of them: a stray value rather than a class


def _stray_values(index: DatasetIndex, splits: dict[str, SplitStats], facts: list[Facts], problems: list[str],
                  warnings: list[str]) -> None:
    """A class held by a handful of pixels or by one file. Without classes.json the class table is derived from
    the largest stored value, so one stray value (a 9 painted by a brush, an anti-aliased edge) silently adds
    classes: a problem to confirm. With classes.json the class was declared: a warning."""
    c, k = index.classes, index.classes.num_classes
    pixels = sum((st.pixels[:k] for st in splits.values()), np.zeros(k, np.int64))
    files = sum((st.images_with for st in splits.values()), np.zeros(k, np.int64))
    total = pixels.sum()
    if total == 0:
        return
    share = pixels / total
    rare = [i for i in range(1, k) if pixels[i] and (share[i] < RARE_SHARE or (files[i] == 1 and share[i] < RARE_ONE_FILE))]
    for i in rare:
        first = next(f.sample.mask for f in facts if f.counts is not None and f.counts[i])
        where = f"{pixels[i]} pixel(s) in {files[i]} mask(s), e.g. {first}"
        if c.derived:
            gap = [j for j in range(max([x for x in range(i) if pixels[x]] or [0]) + 1, i) if not pixels[j]]
            adds = f" (and makes values {gap[0]}..{gap[-1]} empty classes)" if gap else ""
            problems.append(f"mask value {i} is a class of only {where}: a stray value? It adds class_{i}{adds}; fix "
                            f"those pixels, or if it is a real class confirm it by writing {index.root / 'classes.json'} "
                            "with its name")
        else:
            warnings.append(f"class '{c.names[i]}' has only {where}; the model can hardly learn it - label more "
                            "examples or merge it into another class")


def _objects(index: DatasetIndex, facts: list[Facts], most: int = 8) -> dict:
    """Object sizes per class on a cheap, even sample of the clean train masks: the figures the recipe's
    scale for big images comes from (engine/scale.py measures the same way)."""
    clean = [f.sample for f in facts if f.split == "train" and f.counts is not None and not f.problem]
    picked = clean[:: max(1, len(clean) // most)][:most]
    if not picked:
        return {}
    names = index.classes.names
    sizes = object_sizes((load_mask(s, index.mask_color_channel) for s in picked), index.classes.num_classes)
    return {"masks": len(picked), "background": None if sizes.background is None else names[sizes.background],
            "small_common_extent_px": sizes.small_common(),
            "per_class": {n: {"objects": sizes.counts[i], "median_extent_px": sizes.median[i],
                              "p10_extent_px": sizes.p10[i]} for i, n in enumerate(names)}}


def _spread(v: np.ndarray) -> dict:
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}
