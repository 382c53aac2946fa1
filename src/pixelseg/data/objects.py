"""Object sizes per class, from the connected components of the masks (the doctor and the recipe use them).

An object's extent is the longer side of its component's bounding box, in source pixels. Per class: the
number of objects, the median and the 10th percentile extent. The class covering most pixels is treated
as the background (`background`), whose "objects" are the gaps between the others.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_AREA = 4            # components smaller than this are label noise, not objects


@dataclass(frozen=True)
class ObjectSizes:
    counts: list[int]                   # objects per class
    median: list[float | None]          # median extent per class (px), None when the class has no object
    p10: list[float | None]
    background: int | None              # the class with the most pixels

    def small_common(self) -> float | None:
        """The extent the scale must keep visible: the median over the foreground classes with objects of
        their 10th percentile extent (the small end of the common objects)."""
        vals = [p for c, p in enumerate(self.p10) if p is not None and c != self.background]
        return float(np.median(vals)) if vals else None

    def to_dict(self) -> dict:
        return {"objects": self.counts, "median_extent_px": self.median, "p10_extent_px": self.p10,
                "background": self.background}


def object_sizes(masks, num_classes: int) -> ObjectSizes:
    """Sizes over `masks` (an iterable of HxW class-index arrays; other values, the ignore index, skipped)."""
    extents: list[list[int]] = [[] for _ in range(num_classes)]
    pixels = np.zeros(num_classes, np.int64)
    for m in masks:
        m = np.asarray(m)
        valid = m[m < num_classes].astype(np.int64)
        pixels += np.bincount(valid, minlength=num_classes)[:num_classes]
        for c in np.unique(valid):
            n, _, stats, _ = cv2.connectedComponentsWithStats((m == c).astype(np.uint8), connectivity=8)
            keep = stats[1:, cv2.CC_STAT_AREA] >= MIN_AREA
            extents[c] += np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])[keep].tolist()
    med = [float(np.median(e)) if e else None for e in extents]
    p10 = [float(np.percentile(e, 10)) if e else None for e in extents]
    bg = int(np.argmax(pixels)) if pixels.sum() else None
    return ObjectSizes([len(e) for e in extents], med, p10, bg)
