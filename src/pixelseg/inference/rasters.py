"""Prediction of a georeferenced raster too big to hold in memory: block by block, with bounded memory.

`predict_raster` walks the raster (rasterio) in `block` x `block` windows at source resolution, each read with
a `margin` on every side so the network sees context across the seams; each block (+ margins) is converted to
uint8 as geotiff.read_raster_image converts a whole raster (geotiff.to_uint8), predicted with the Predictor (whole, or by its own
sliding windows), and only the block's centre is written into the output label map with `write(window=...)`.
The output is geotiff.label_writer's tiled, compressed single-band GeoTIFF (uint8 with the classes' colour table,
uint16 over 256 classes) with the input's CRS and transform, renamed into place when complete.
Memory: one block plus its margins, whatever the raster's size.

Predictor.predict_paths sends here a GeoTIFF whose header declares more pixels than the decode limit
(data.io.max_pixels()), which read_image would refuse; plain PNG/JPEG above the limit are still refused (they
cannot be read by window). The block-by-block path has its own ceiling, max_raster_pixels() (2**32 pixels,
65536 squared, by default; --max-raster-pixels or PIXELSEG_MAX_RASTER_PIXELS): a header of a few KB can declare
200000 x 200000 pixels, which would keep a CPU busy for days (issue 27).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from pixelseg.data import geotiff
from pixelseg.data.io import max_pixels, pixel_limit, set_pixel_limit
from pixelseg.errors import PixelsegError

MIN_MARGIN = 64
DEFAULT_MAX_RASTER_PIXELS = 1 << 32
MAX_RASTER_PIXELS_ENV = "PIXELSEG_MAX_RASTER_PIXELS"


def set_max_raster_pixels(n: int | None) -> None:
    """The block-by-block ceiling for this process and the processes it starts (None: back to the default)."""
    set_pixel_limit(MAX_RASTER_PIXELS_ENV, "--max-raster-pixels", n)


def max_raster_pixels() -> int:
    return pixel_limit(MAX_RASTER_PIXELS_ENV, DEFAULT_MAX_RASTER_PIXELS)


def check_raster_size(path) -> None:
    """Refuse a raster whose header declares more pixels than the block-by-block ceiling, before any work."""
    h, w, _ = geotiff.raster_shape(path)
    limit = max_raster_pixels()
    if h * w > limit:
        raise PixelsegError(f"{path}: declares {w}x{h} = {w * h:,} pixels, above the block-by-block limit of "
                            f"{limit:,} (a GeoTIFF bomb, or a raster that would take days here); if it is real, "
                            f"give --max-raster-pixels {w * h} (or {MAX_RASTER_PIXELS_ENV}) or cut it into tiles "
                            f"first (gdal_retile.py)")


def default_margin(predictor) -> int:
    """A quarter of the training crop/size in source pixels (the crop divided by the scale), at least 64."""
    pre = predictor.info.preprocessing
    side = max(predictor.tile or pre.image_size)
    if pre.resize == "scale" and pre.scale:
        side = side / pre.scale
    return max(MIN_MARGIN, int(math.ceil(side / 4)))


def _windows(height: int, width: int, block: int):
    for y in range(0, height, block):
        for x in range(0, width, block):
            yield y, x, min(block, height - y), min(block, width - x)


def _float_top(src, block: int) -> float | None:
    """For a non-8/16-bit raster, the maximum over the whole raster (read block by block), so every block is
    scaled to 8 bits exactly as geotiff.to_uint8 scales the whole raster; None for uint8/uint16."""
    from rasterio.windows import Window
    if all(d in ("uint8", "uint16") for d in src.dtypes):
        return None
    top = 0.0
    for y, x, h, w in _windows(src.height, src.width, block):
        a = src.read(window=Window(x, y, w, h))
        problem = geotiff.non_finite_problem(src.name, src, a, window=Window(x, y, w, h))
        if problem:                   # before anything is written (issue 27)
            raise PixelsegError(problem)
        a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = max(top, float(a.max(initial=0.0)))
    return top


def predict_raster(predictor, src_path, out_path, block: int = 4096, margin: int | None = None) -> dict:
    """Label map of the raster at `src_path` written to the GeoTIFF `out_path`, block by block (see the module
    docstring). Returns {"blocks": n, "height": H, "width": W, "seconds": s}."""
    from rasterio.windows import Window

    t0 = time.time()
    block = int(block)
    if block < 8:
        raise PixelsegError(f"block {block}: give at least 8 pixels per side")
    margin = default_margin(predictor) if margin is None else int(margin)
    if margin < 0:
        raise PixelsegError(f"margin {margin}: give 0 or more pixels")
    check_raster_size(src_path)
    classes = predictor.classes
    dtype = "uint8" if classes.num_classes <= 256 else "uint16"
    out_path = Path(out_path)
    n = 0
    with geotiff._open(src_path) as src:
        H, W = src.height, src.width
        side = min(block + 2 * margin, max(H, W))
        # one block of every band must fit the decode limit's bytes (--max-pixels x 4), or 16 bytes a pixel of the
        # block (4 float32 bands) under a small limit: 200 float64 bands make one block tens of GiB (issue 27)
        decoded = side * side * src.count * geotiff.sample_bytes(src)
        budget = max(4 * max_pixels(), 16 * side * side)
        if decoded > budget:
            raise PixelsegError(f"{src_path}: a {side}x{side} block of its {src.count} bands is {decoded / 2**30:.1f} "
                                f"GiB decoded, above the limit of {budget / 2**30:.1f} GiB (--max-pixels x 4 bytes); "
                                f"keep the bands the model takes (gdal_translate -b 1 -b 2 -b 3)")
        top = _float_top(src, block)
        ref = (src.crs, src.transform) if src.crs is not None else None
        nodata = geotiff.declares_nodata(src)
        with geotiff.label_writer(out_path, H, W, dtype, ref, classes.colors, classes.names,
                                  nodata=geotiff.NODATA_LABEL if nodata else None) as dst:
            for y, x, h, w in _windows(H, W, block):
                y0, x0 = max(0, y - margin), max(0, x - margin)
                y1, x1 = min(H, y + h + margin), min(W, x + w + margin)
                image = geotiff.to_uint8(src.read(window=Window(x0, y0, x1 - x0, y1 - y0)), top)
                label = predictor.predict(image)
                centre = label[y - y0:y - y0 + h, x - x0:x - x0 + w]
                if nodata:       # the input's nodata pixels stay nodata
                    valid = src.dataset_mask(window=Window(x, y, w, h)) > 0
                    centre = np.where(valid, centre, geotiff.NODATA_LABEL)
                dst.write(np.ascontiguousarray(centre).astype(dtype, copy=False), 1, window=Window(x, y, w, h))
                n += 1
    return {"blocks": n, "height": H, "width": W, "seconds": time.time() - t0}


def too_big_to_read(path) -> bool:
    """A GeoTIFF whose header declares more pixels than the decode limit: predicted by window, not read."""
    if not geotiff.is_raster(path) or not Path(path).is_file():
        return False
    h, w, _ = geotiff.raster_shape(path)
    return h * w > max_pixels()
