"""GeoTIFF / Cloud-Optimized GeoTIFF through rasterio (the `geo` extra): multi-band images, masks, and label
maps written back with the input's georeference.

data/io.py sends .tif/.tiff files here when rasterio is installed, so a 4- or 12-band raster reads as an
HxWxC uint8 array like any image (16-bit scaled to 8 bits as for PNG; float by the file's maximum) and
in_channels follows the band count. `write_label_geotiff` is what `predict` calls for a GeoTIFF input: the
label map gets the input's CRS and affine transform, so it overlays the source in any GIS.
"""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np

from pixelseg.errors import PixelsegError
from pixelseg.fileio import atomic_path

TIFF_EXTS = (".tif", ".tiff")


@functools.lru_cache(maxsize=1)
def available() -> bool:
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def is_raster(path) -> bool:
    return Path(path).suffix.lower() in TIFF_EXTS and available()


def _open(path):
    import rasterio
    from rasterio.errors import RasterioIOError
    try:
        return rasterio.open(str(path))
    except RasterioIOError as e:
        raise PixelsegError(f"{path}: cannot be read as a GeoTIFF ({str(e).splitlines()[0][:160]}); "
                            "check the file or re-export it") from None


def raster_shape(path) -> tuple[int, int, int]:
    """(H, W, bands) from the header."""
    with _open(path) as src:
        return src.height, src.width, src.count


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a.astype(np.float32) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    f = np.nan_to_num(a.astype(np.float32))
    return np.clip(f / max(float(f.max(initial=0.0)), 1.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def read_raster_image(path) -> np.ndarray:
    """H x W x bands uint8."""
    with _open(path) as src:
        a = src.read()                                   # bands x H x W
    return np.ascontiguousarray(_to_uint8(np.moveaxis(a, 0, -1)))


def read_raster_mask(path) -> np.ndarray:
    """H x W class indices from band 1 (uint8 or uint16)."""
    with _open(path) as src:
        a = src.read(1)
    if np.issubdtype(a.dtype, np.floating) or a.min(initial=0) < 0 or a.max(initial=0) > 65535:
        raise PixelsegError(f"{path}: mask band holds values that are not class indices 0..65535; store integers")
    return a.astype(np.uint8 if a.max(initial=0) < 256 else np.uint16)


def georeference(path) -> tuple | None:
    """(crs, transform) of a georeferenced raster; None for a plain image."""
    if not is_raster(path):
        return None
    with _open(path) as src:
        if src.crs is None:
            return None
        return src.crs, src.transform


def write_label_geotiff(path, labels: np.ndarray, like=None, colors=None) -> Path:
    """A single-band label map (uint8, or uint16 over 256 classes), tiled and compressed, with the CRS and
    transform of `like` (the input raster) when it has them; `colors` (one RGB per class) become its
    colour table. Written atomically."""
    import rasterio
    import rasterio.errors
    labels = np.asarray(labels)
    dtype = "uint8" if labels.max(initial=0) < 256 else "uint16"
    profile = {"driver": "GTiff", "height": labels.shape[0], "width": labels.shape[1], "count": 1, "dtype": dtype,
               "compress": "deflate"}
    if labels.shape[0] >= 256 and labels.shape[1] >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    ref = georeference(like) if like is not None else None
    if ref is not None:
        profile.update(crs=ref[0], transform=ref[1])
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # a plain (not georeferenced) input gives a plain label map: rasterio's warning says just that
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(str(tmp), "w", **profile) as dst:
            dst.write(labels.astype(dtype), 1)
            if colors is not None and dtype == "uint8":
                dst.write_colormap(1, {i: tuple(int(v) for v in c) for i, c in enumerate(colors)})
    return path
