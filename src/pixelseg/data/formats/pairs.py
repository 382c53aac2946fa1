"""Flat pairs: images and their masks side by side in one folder, the mask named after the image.

    ROOT/<stem>.<ext>         the image (any format pixelseg reads)
    ROOT/<stem>_mask.png      its index mask (also <stem>_label, _labels, _seg, _gt, -mask)
    ROOT/classes.json         optional, as in the folder layout ('values' / 'ignore_values' included)

This is how many exports and hand-made sets look. Validation is held out of the pairs by the hash rule every
layout uses (data/formats/layout.py `holdout`).
"""
from __future__ import annotations

from pathlib import Path

from pixelseg.data.formats.folder import read_classes
from pixelseg.data.index import DatasetIndex, Sample
from pixelseg.data.formats.layout import holdout, holdout_note, list_images
from pixelseg.errors import PixelsegError
from pixelseg.registry import Registry

MASK_SUFFIXES = ("_mask", "-mask", "_masks", "_label", "_labels", "_seg", "_gt")


def register(formats: Registry) -> None:
    formats.register("pairs", detect=detect, strict=True)(open_pairs)


def _mask_stem(stem: str) -> str | None:
    """The image stem a mask file's stem names (x_mask -> x), or None when it is not named like a mask."""
    low = stem.lower()
    for suffix in MASK_SUFFIXES:
        if low.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


def _split(root: Path, odd: list[str] | None = None) -> tuple[dict[str, Path], dict[str, Path]]:
    """(stem -> image, stem -> mask) of a flat folder."""
    files = list_images(root, "images", odd)
    images, masks = {}, {}
    for stem, path in files.items():
        base = _mask_stem(stem)
        if base is not None:
            if base in masks:
                raise PixelsegError(f"{path}: a second mask for '{base}' ({masks[base].name}); keep one")
            masks[base] = path
        else:
            images[stem] = path
    return images, masks


def detect(root: Path) -> bool:
    """Image files at the top of ROOT, at least one of them with a mask named after it."""
    try:
        images, masks = _split(root)
    except (PixelsegError, OSError):
        return False
    return any(stem in images for stem in masks)


def open_pairs(root: Path, val_fraction: float = 0.1, strict: bool = True) -> DatasetIndex:
    """strict=False (the doctor) records unpaired files in index.problems instead of stopping at the first."""
    odd: list[str] = []
    images, masks = _split(root, odd)
    missing = [p for s, p in images.items() if s not in masks]
    orphans = [p for s, p in masks.items() if s not in images]
    problems: list[str] = odd + [f"{p}: has no mask {root / (p.stem + '_mask.png')}; add the mask or move the image "
                                 "out of the folder" for p in missing]
    problems += [f"{p}: mask without an image {p.stem.rsplit('_', 1)[0]}.* in {root}; add the image or remove the "
                 "mask" for p in orphans]
    if strict and problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PixelsegError(problems[0] + more)
    samples = [Sample(images[s], masks[s], s) for s in images if s in masks]
    if not samples:
        raise PixelsegError(f"{root}: no image has a mask named after it (<stem>_mask.png); expected the pairs layout")
    train, val = holdout(samples, val_fraction)
    notes = [f"flat pairs: {len(samples)} images with <stem>{_suffix_of(masks)} masks side by side in {root}",
             holdout_note(val, val_fraction)]
    splits, classes = read_classes(root, {"train": train, "val": val}, notes, None, "pairs")
    return DatasetIndex(root, "pairs", classes, splits, None, notes, [] if strict else problems)


def _suffix_of(masks: dict[str, Path]) -> str:
    stem, path = next(iter(masks.items()))
    return path.stem[len(stem):]
