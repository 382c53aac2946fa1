"""The dataset index: which image goes with which mask, split by split, and the class table.

Every format reader (data/formats/folder.py and data/<name>.py) returns one; the dataset, the doctor, the
trainer and the recipe read it. It holds paths only: pixels are decoded lazily by the dataset.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pixelseg.data.classes import ClassTable
from pixelseg.errors import PixelsegError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None
    stem: str
    # turns the stored mask into class indices (data/labels.py); None = the file holds the indices
    decode: Callable | None = field(default=None, compare=False, repr=False)


@dataclass
class DatasetIndex:
    root: Path
    format: str
    classes: ClassTable
    splits: dict[str, list[Sample]]
    mask_color_channel: int | None = None   # keras_segmentation reads the index from cv2's first (blue) channel
    notes: list[str] = field(default_factory=list)
    # pairing problems found with strict=False (the dataset doctor lists them all instead of stopping)
    problems: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits or not self.splits[name]:
            have = ", ".join(s for s in self.splits if self.splits[s]) or "none"
            raise PixelsegError(f"{self.root}: has no '{name}' split (splits found: {have}); pick one with --split")
        return self.splits[name]
