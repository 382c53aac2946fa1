"""Label maps -> what /v1/segment answers: palette PNG bytes, overlay PNG bytes, class shares, RLE."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pixelseg.viz import overlay as viz
from pixelseg.data.classes import ClassTable

# zlib level 1: label maps are long runs and compress well anyway; the default (6) costs ~3x the CPU
# time for a few percent of bytes, which a server answering many requests should not spend
PNG_COMPRESS_LEVEL = 1


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def label_png(label: np.ndarray, classes: ClassTable) -> bytes:
    """The same PNG `pixelseg predict` writes (viz.overlay.label_png_image): pixel values are the class indices,
    the palette holds the class colors; 16-bit grayscale when there are more than 256 classes."""
    return viz.label_png_bytes(label, classes.colors, classes.ignore_index, PNG_COMPRESS_LEVEL)


def overlay_png(image: np.ndarray, label: np.ndarray, classes: ClassTable, alpha: float, boundaries: bool,
                legend: bool) -> bytes:
    out = viz.overlay(image, label, classes.colors, alpha, classes.ignore_index, boundaries=boundaries)
    if legend:
        counts = class_counts(label, classes.num_classes)
        present = np.flatnonzero(counts)
        extra = {int(i): f"{100.0 * counts[i] / max(label.size, 1):.1f}%" for i in present}
        out = viz.add_legend(out, classes.names, classes.colors, present, extra)
    return _png(Image.fromarray(out))


def confidence_png(confidence: np.ndarray) -> bytes:
    """Each pixel's top class probability (H x W in [0, 1]) as an 8-bit grayscale PNG: byte = round(255 p),
    the encoding of `predict --uncertainty` (uncertainty.to_png8)."""
    from pixelseg.viz.overlay import to_png8
    return _png(Image.fromarray(to_png8(confidence)))


def class_counts(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per class (predictions are always class indices, never the ignore index)."""
    return np.bincount(label.ravel().astype(np.intp, copy=False), minlength=num_classes)[:num_classes]


def rle(label: np.ndarray) -> tuple[list[int], list[int]]:
    """Row-major run-length encoding as two parallel lists: `values[i]` repeated `lengths[i]` times.
    Decode: np.repeat(values, lengths).reshape(height, width)."""
    flat = label.ravel()
    if flat.size == 0:
        return [], []
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    lengths = np.diff(np.append(starts, flat.size))
    return flat[starts].tolist(), lengths.tolist()
