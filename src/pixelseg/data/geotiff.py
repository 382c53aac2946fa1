"""GeoTIFF / Cloud-Optimized GeoTIFF through rasterio (the `geo` extra): multi-band images, masks, and label
maps written back with the input's georeference.

data/io.py sends .tif/.tiff files here when rasterio is installed, so a 4- or 12-band raster reads as an
HxWxC uint8 array like any image (16-bit scaled to 8 bits as for PNG; float by the file's maximum) and
in_channels follows the band count. `write_label_geotiff` is what `predict` calls for a GeoTIFF input: the
label map gets the input's CRS and affine transform, so it overlays the source in any GIS.
"""
from __future__ import annotations

import contextlib
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


def to_uint8(a: np.ndarray, top: float | None = None) -> np.ndarray:
    """bands x H x W as read -> H x W x bands uint8: 16-bit scaled as for PNG, float by `top` (the whole
    raster's maximum; default: this array's), so a raster read block by block converts like a whole one."""
    a = np.moveaxis(a, 0, -1)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:
        return np.ascontiguousarray((a.astype(np.float32) / 65535.0 * 255.0 + 0.5).astype(np.uint8))
    f = np.nan_to_num(a.astype(np.float32))
    top = float(f.max(initial=0.0)) if top is None else top
    return np.ascontiguousarray(np.clip(f / max(top, 1.0) * 255.0 + 0.5, 0, 255).astype(np.uint8))


def read_raster_image(path) -> np.ndarray:
    """H x W x bands uint8."""
    with _open(path) as src:
        return to_uint8(src.read())                      # bands x H x W


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


@contextlib.contextmanager
def label_writer(path, height: int, width: int, dtype: str, ref: tuple | None = None, colors=None):
    """An open single-band label GeoTIFF (`dtype` uint8 or uint16), tiled and compressed, with the (crs,
    transform) `ref` when given and `colors` (one RGB per class) as its colour table; written to a temporary
    file beside `path` and renamed into place when the block ends without an error."""
    import rasterio
    import rasterio.errors
    profile = {"driver": "GTiff", "height": height, "width": width, "count": 1, "dtype": dtype, "compress": "deflate"}
    if height >= 256 and width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if ref is not None:
        profile.update(crs=ref[0], transform=ref[1])
    with atomic_path(Path(path)) as tmp, warnings.catch_warnings():
        # a plain (not georeferenced) input gives a plain label map: rasterio's warning says just that
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(str(tmp), "w", **profile) as dst:
            if colors is not None and dtype == "uint8":
                dst.write_colormap(1, {i: tuple(int(v) for v in c) for i, c in enumerate(colors)})
            yield dst


def write_label_geotiff(path, labels: np.ndarray, like=None, colors=None) -> Path:
    """A label map (uint8, or uint16 over 256 classes) with the CRS and transform of `like` (the input
    raster) when it has them, through label_writer."""
    labels = np.asarray(labels)
    dtype = "uint8" if labels.max(initial=0) < 256 else "uint16"
    with label_writer(path, labels.shape[0], labels.shape[1], dtype,
                      georeference(like) if like is not None else None, colors) as dst:
        dst.write(labels.astype(dtype), 1)
    return Path(path)
