"""Every prediction file pixelseg writes, named and written in one place.

For an input image <stem> (or <folder>_<stem> where two inputs share a stem: `output_stems`) in the out folder:
  <stem>.png              palette PNG whose pixel values are the class indices (viz.overlay.save_label_png)
  <stem>_overlay.png      the class colours over the image, with a legend            (--overlay)
  <stem>_confidence.png   max class probability, 8-bit (byte / 255)                 (--uncertainty)
  <stem>_entropy.png      entropy / log K, 8-bit                                     (--uncertainty)
  <stem>_confidence.npy, <stem>_entropy.npy   the same maps in float32               (--uncertainty-npy)
  <stem>.tif              for a GeoTIFF input: the label band (class names as tags, the input's CRS, transform
                          and nodata) plus a confidence band with --uncertainty
  <stem>.geojson          polygons per region and class                              (--vector geojson)
Every file is written atomically. `planned_outputs` lists them before anything runs, so that a job can refuse
to replace an input.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

UNCERTAINTY_SUFFIXES = ("_confidence", "_entropy")


def output_stems(paths: Sequence[Path]) -> list[str]:
    """The output name of each input: its stem, or <folder>_<stem> where two inputs share a stem."""
    count = Counter(p.stem for p in paths)
    return [f"{p.parent.name}_{p.stem}" if count[p.stem] > 1 else p.stem for p in paths]


def planned_outputs(paths: Sequence[Path], out_dir: Path, overlay: bool, uncertainty: bool = False,
                    vector: str | None = None) -> list[Path]:
    """The PNG (and vector) files a job over `paths` will write, in order."""
    suffixes = ("",) + (("_overlay",) if overlay else ()) + (UNCERTAINTY_SUFFIXES if uncertainty else ())
    stems = output_stems(paths)
    return [out_dir / f"{stem}{s}.png" for stem in stems for s in suffixes] + \
        ([out_dir / f"{stem}.{vector}" for stem in stems] if vector else [])


class PredictionWriter:
    """Writes one input's outputs: `write(path, stem, image, label, probs=None)` -> the files written.
    `probs` (K x H x W, from Predictor.probs) are needed only for the uncertainty maps."""

    def __init__(self, out_dir, classes, overlay: bool = False, alpha: float = 0.5, uncertainty: bool = False,
                 npy: bool = False):
        self.out_dir, self.classes = Path(out_dir), classes
        self.overlay, self.alpha, self.uncertainty, self.npy = overlay, alpha, uncertainty, npy
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def write(self, path: Path | None, stem: str, image: np.ndarray, label: np.ndarray,
              probs: np.ndarray | None = None) -> list[Path]:
        from pixelseg.data.geotiff import georeference, write_label_geotiff
        from pixelseg.viz import overlay as viz

        classes, out = self.classes, []
        out.append(self.out_dir / f"{stem}.png")
        viz.save_label_png(out[-1], label, classes.colors, classes.ignore_index)
        if self.overlay:
            shown = image[:, :, :3] if image.shape[2] >= 3 else image[:, :, 0]
            out.append(self.out_dir / f"{stem}_overlay.png")
            viz.save_overlay(out[-1], shown, label, classes, alpha=self.alpha)
        maps = None
        if self.uncertainty:
            if probs is None:
                raise ValueError("uncertainty maps need the class probabilities")
            from pixelseg.models.outputs import confidence_maps
            maps = confidence_maps(probs, probs=True)
        if path is not None and georeference(path) is not None:   # a GeoTIFF input: a label map a GIS overlays
            band = viz.to_png8(maps[0]) if maps is not None and label.dtype == np.uint8 else None
            out.append(write_label_geotiff(self.out_dir / f"{stem}.tif", label, like=path, colors=classes.colors,
                                           names=classes.names, confidence=band))
        if maps is not None:
            out += self._maps(stem, maps)
        return out

    def _maps(self, stem: str, maps) -> list[Path]:
        from PIL import Image

        from pixelseg.fileio import atomic_path
        from pixelseg.viz.overlay import to_png8

        out = []
        for suffix, values in zip(UNCERTAINTY_SUFFIXES, maps):
            out.append(self.out_dir / f"{stem}{suffix}.png")
            with atomic_path(out[-1]) as tmp:
                Image.fromarray(to_png8(values)).save(tmp, format="PNG")
            if self.npy:
                out.append(self.out_dir / f"{stem}{suffix}.npy")
                with atomic_path(out[-1]) as tmp:
                    np.save(tmp, values.astype(np.float32), allow_pickle=False)
        return out
