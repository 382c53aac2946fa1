"""`pixelseg data convert`: any readable dataset written out in the folder format.

    OUT/classes.json                        the class table (names, colors, ignore index)
    OUT/{train,val[,test]}/images/<stem>.*  the original image files, byte for byte (copied; hard-linked with
                                            link=True, which saves the space but shares the files with SRC)
    OUT/{train,val}/masks/<stem>.png        class-index palette PNGs (16-bit gray above 256 classes)
The masks go through the same decoder training uses (data/labels.py), so the converted dataset reads
back pixel-identical, and it is checked against its image while being written. Files are written
atomically, in a thread pool (PNG encoding and PIL decoding release the GIL).
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pixelseg.data.tools.checks import check_mask
from pixelseg.data.formats.folder import write_classes_json
from pixelseg.data.formats import open_dataset
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.io import image_size
from pixelseg.data.labels import load_mask
from pixelseg.errors import PixelsegError
from pixelseg.fileio import atomic_path


@dataclass
class ConvertSummary:
    out: Path
    counts: dict[str, int]
    linked: int
    notes: list[str]


def _copy_image(src: Path, dst: Path, link: bool) -> bool:
    """With `link`, a hard link when source and destination share a file system (no space, instant); else a copy."""
    with atomic_path(dst) as tmp:
        if link:
            try:
                tmp.unlink()
                os.link(src, tmp)
                return True
            except OSError:
                pass
        shutil.copyfile(src, tmp)
        return False


def _write_one(index: DatasetIndex, s: Sample, split: str, out: Path, link: bool) -> bool:
    from pixelseg.viz.overlay import save_label_png

    classes = index.classes
    linked = _copy_image(s.image, out / split / "images" / f"{s.stem}{s.image.suffix.lower()}", link)
    if s.mask is not None:
        mask = load_mask(s, index.mask_color_channel)
        check_mask(mask, image_size(s.image), classes.num_classes, classes.ignore_index, s)
        save_label_png(out / split / "masks" / f"{s.stem}.png", mask, classes.colors, classes.ignore_index)
    return linked


def convert(src: str | Path, out: str | Path, format: str = "auto", to: str = "folder", workers: int = 4,
            val_fraction: float = 0.1, link: bool = False) -> ConvertSummary:
    if to != "folder":
        raise PixelsegError(f"--to {to}: only the folder format can be written")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PixelsegError(f"{out}: is a file, not a folder; give --out a new or empty folder")
    index = open_dataset(src, format, val_fraction)
    if out.exists() and any(out.iterdir()):
        raise PixelsegError(f"{out}: already holds files; choose an empty or new --out folder")
    if out.resolve() == index.root.resolve():
        raise PixelsegError(f"{out}: is the source dataset; choose another --out folder")
    for split, samples in index.splits.items():
        seen: dict[str, Path] = {}
        for s in samples:
            if s.stem in seen:
                raise PixelsegError(f"{s.image}: has the same name '{s.stem}' as {seen[s.stem]} in split '{split}'; "
                                    "the folder format pairs files by name, so rename one")
            seen[s.stem] = s.image
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, split) for split, samples in index.splits.items() for s in samples]
    with ThreadPoolExecutor(workers) as ex:
        linked = sum(ex.map(lambda job: _write_one(index, job[0], job[1], out, link), jobs))
    write_classes_json(out, index.classes)
    notes = list(index.notes)
    return ConvertSummary(out, {k: len(v) for k, v in index.splits.items()}, linked, notes)
