"""Turning what a dataset stores into class indices: the one place a label convention is applied.

A format that stores plain class indices needs nothing here (io.read_mask). The others attach a small,
picklable *decoder* to each Sample, run lazily in the loader workers:
  ValueMap     stored pixel value -> class index through a lookup table (Cityscapes labelIds -> train ids,
               ADE20K's "0 = other, 1..150" -> ignore, 0..149, CamVid's void 11 -> ignore, 0/255 binary masks)
  ColorMap     RGB color -> class index (color-coded masks); an unknown color is an error that lists it
  Polygons     COCO polygons / RLE rasterized with pycocotools
  LabelMeShapes  LabelMe JSON shapes rasterized in file order (later shapes on top, as labelme does)
Every decoder rejects values it has no rule for instead of guessing: a mislabel is never silent.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pixelseg.data.io import load, read_mask
from pixelseg.errors import PixelsegError


class UnknownColorsError(PixelsegError):
    """A color mask holds colors the class table does not name; `colors` maps (r, g, b) -> pixel count."""

    def __init__(self, message: str, path: Path, colors: dict[tuple[int, int, int], int]):
        super().__init__(message)
        self.path, self.colors = path, colors


@dataclass(frozen=True)
class ValueMap:
    """lut[stored value] = class index; -1 marks a value with no meaning in this format (an error)."""
    lut: tuple[int, ...]
    expected: str           # how the stored values are described in errors, e.g. "Cityscapes labelIds 0..33"

    def __call__(self, path: Path) -> np.ndarray:
        raw = read_mask(path)
        lut = np.asarray(self.lut, np.int32)
        if int(raw.max(initial=0)) >= len(lut):
            bad = sorted(int(v) for v in np.unique(raw[raw >= len(lut)]))[:5]
            raise PixelsegError(f"{path}: value(s) {bad} are not {self.expected}; is this the right mask file?")
        out = lut[raw]
        if (out < 0).any():
            bad = sorted(int(v) for v in np.unique(raw[out < 0]))[:5]
            raise PixelsegError(f"{path}: value(s) {bad} are not {self.expected}; is this the right mask file?")
        return out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)


def value_map(pairs: dict[int, int], expected: str) -> ValueMap:
    size = max(pairs) + 1
    lut = [-1] * size
    for v, c in pairs.items():
        lut[v] = c
    return ValueMap(tuple(lut), expected)


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@dataclass(frozen=True)
class ColorMap:
    """(r, g, b) -> class index (or the ignore index). Exact colors only: a JPEG-compressed color mask has
    blended edge colors and is reported, not rounded to the nearest class."""
    colors: tuple[tuple[int, int, int], ...]
    indices: tuple[int, ...]

    def __call__(self, path: Path) -> np.ndarray:
        im = load(path, "mask", "add the mask or remove its image")
        if im.mode in ("L", "1", "I;16", "I", "I;16B", "I;16L"):
            raise PixelsegError(f"{path}: is a single-channel (index) mask but this dataset's masks are color-coded; "
                                "use the index-mask format (--format folder) or save color masks")
        codes = _pack(np.asarray(im.convert("RGB")))
        keys = _pack(np.asarray(self.colors, np.int32).reshape(-1, 1, 3)).ravel()
        order = np.argsort(keys)
        keys, vals = keys[order], np.asarray(self.indices, np.int32)[order]
        pos = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
        known = keys[pos] == codes
        if not known.all():
            u, n = np.unique(codes[~known], return_counts=True)
            found = {((int(c) >> 16) & 255, (int(c) >> 8) & 255, int(c) & 255): int(k) for c, k in zip(u, n)}
            top = sorted(found.items(), key=lambda kv: -kv[1])[:5]
            listed = ", ".join(f"{list(c)} ({k} px)" for c, k in top)
            more = f" and {len(found) - 5} more" if len(found) > 5 else ""
            raise UnknownColorsError(f"{path}: color(s) {listed}{more} are not in the class table; add them to the classes "
                                     "file (or list them as ignore colors), or re-export the mask without anti-aliasing",
                                     path, found)
        out = vals[pos]
        return out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)


@dataclass(frozen=True)
class Polygons:
    """One image's COCO annotations: (class index, segmentation) with segmentation a polygon list,
    an uncompressed RLE dict or a compressed RLE dict. Pixels two different classes claim are set to the
    ignore index (as torchvision's references do): the annotation does not say which is right."""
    height: int
    width: int
    anns: tuple[tuple[int, str], ...]     # (class index, JSON of the segmentation): hashable and picklable
    ignore_index: int

    def __call__(self, path: Path) -> np.ndarray:
        from pycocotools import mask as mask_utils

        h, w = self.height, self.width
        out = np.zeros((h, w), np.uint8 if self.ignore_index < 256 else np.uint16)
        claimed = np.full((h, w), -1, np.int32)
        for cls, seg_json in self.anns:
            seg = json.loads(seg_json)
            try:
                with warnings.catch_warnings():
                    # pycocotools under numpy 2 warns about __array__(copy=...) on every call; the result is right
                    warnings.simplefilter("ignore", DeprecationWarning)
                    m = _rasterize(mask_utils, seg, h, w)
            except (TypeError, ValueError, KeyError, AttributeError) as e:
                raise PixelsegError(f"{path}: a segmentation of this image's annotations cannot be rasterized ({e}); "
                                    "fix the annotation file") from None
            if m.shape != (h, w):
                raise PixelsegError(f"{path}: an RLE of size {list(m.shape)} does not match the image's {h}x{w}; fix the annotation")
            m = m.astype(bool)
            conflict = m & (claimed >= 0) & (claimed != cls)
            claimed[m & (claimed < 0)] = cls
            claimed[conflict] = -2
        out[claimed >= 0] = claimed[claimed >= 0]
        out[claimed == -2] = self.ignore_index
        return out


def _rasterize(mask_utils, seg, h: int, w: int) -> np.ndarray:
    if isinstance(seg, list):  # polygons [[x1, y1, x2, y2, ...], ...]
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
    if isinstance(seg.get("counts"), list):  # uncompressed RLE
        return mask_utils.decode(mask_utils.frPyObjects(seg, h, w))
    counts = seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"]
    return mask_utils.decode({"size": seg["size"], "counts": counts})


@dataclass(frozen=True)
class LabelMeShapes:
    """A LabelMe JSON rasterized: background 0, each shape filled with its label's class, in file order."""
    name_to_index: tuple[tuple[str, int], ...]

    def __call__(self, path: Path) -> np.ndarray:
        doc = read_labelme(path)
        h, w = int(doc["imageHeight"]), int(doc["imageWidth"])
        table = dict(self.name_to_index)
        canvas = Image.new("I", (w, h), 0)   # 32-bit so class indices above 255 survive
        draw = ImageDraw.Draw(canvas)
        for i, shape in enumerate(doc.get("shapes", [])):
            label = shape.get("label")
            if label not in table:
                raise PixelsegError(f"{path}: shape {i} has label '{label}', which is not in the class list "
                                    f"({', '.join(list(table)[:8])}...); add it to labels.txt or fix the label")
            draw_shape(draw, shape, table[label], path, i)
        return np.asarray(canvas).astype(np.uint16 if max(table.values(), default=0) > 255 else np.uint8)


def read_labelme(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PixelsegError(f"{path}: LabelMe JSON not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PixelsegError(f"{path}: not valid JSON ({e}); re-save it from LabelMe") from None
    if not isinstance(doc, dict) or "imageHeight" not in doc or "imageWidth" not in doc or not isinstance(doc.get("shapes"), list):
        raise PixelsegError(f"{path}: not a LabelMe file (needs imageHeight, imageWidth and a shapes list)")
    return doc


def draw_shape(draw: ImageDraw.ImageDraw, shape: dict, value: int, path: Path, i: int) -> None:
    """LabelMe's shape types, drawn as labelme's own shape_to_mask does (lines and points get a small width)."""
    kind = shape.get("shape_type") or "polygon"
    try:
        pts = [(float(x), float(y)) for x, y in shape["points"]]
    except (KeyError, TypeError, ValueError):
        raise PixelsegError(f"{path}: shape {i} has no valid 'points' list of [x, y]") from None
    if kind == "polygon" and len(pts) >= 3:
        draw.polygon(pts, fill=value, outline=value)
    elif kind == "rectangle" and len(pts) == 2:
        (x0, y0), (x1, y1) = pts
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=value, outline=value)
    elif kind == "circle" and len(pts) == 2:
        (cx, cy), (px, py) = pts
        r = float(np.hypot(px - cx, py - cy))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=value, outline=value)
    elif kind in ("line", "linestrip") and len(pts) >= 2:
        draw.line(pts, fill=value, width=3)
    elif kind == "point" and len(pts) == 1:
        (x, y), r = pts[0], 2
        draw.ellipse([x - r, y - r, x + r, y + r], fill=value, outline=value)
    else:
        raise PixelsegError(f"{path}: shape {i} of type '{kind}' with {len(pts)} point(s) cannot be drawn; "
                            "supported: polygon (3+), rectangle (2), circle (2), line/linestrip (2+), point (1)")


def load_mask(sample, color_channel: int | None = None) -> np.ndarray:
    """The class-index mask of a Sample, whatever its format stores."""
    if sample.decode is not None:
        return sample.decode(sample.mask)
    return read_mask(sample.mask, color_channel)
