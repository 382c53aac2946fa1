"""GeoTIFF / Cloud-Optimized GeoTIFF through rasterio (the `geo` extra): multi-band images, masks, and label
maps written back with the input's georeference.

Float rasters (float32, float64) are scaled to 8 bits by the raster's maximum (negative values clip to 0). NaN
or infinite samples never reach a model as numbers: on pixels the raster declares nodata (a NaN nodata value, a
mask) they read as 0 and predict writes nodata (NODATA_LABEL) there; anywhere else the file is refused.

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


def raster_header(path) -> tuple[int, int, int, int]:
    """(H, W, bands, bytes of the widest band's sample) from the header."""
    with _open(path) as src:
        return src.height, src.width, src.count, sample_bytes(src)


def raster_shape(path) -> tuple[int, int, int]:
    """(H, W, bands) from the header."""
    return raster_header(path)[:3]


def sample_bytes(src) -> int:
    """Bytes of the widest band's sample type of an open raster."""
    return max(np.dtype(d).itemsize for d in src.dtypes)


def to_uint8(a: np.ndarray, top: float | None = None) -> np.ndarray:
    """bands x H x W as read -> H x W x bands uint8: 16-bit scaled as for PNG, float by `top` (the whole
    raster's maximum; default: this array's), so a raster read block by block converts like a whole one."""
    a = np.moveaxis(a, 0, -1)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:
        return np.ascontiguousarray((a.astype(np.float32) / 65535.0 * 255.0 + 0.5).astype(np.uint8))
    # not-a-number and infinite samples are nodata here (read_raster_image refuses them unless the raster declares
    # them nodata): 0, and left out of the maximum (np.nan_to_num's default made +inf 3.4e38, the whole image 0)
    f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(f.max(initial=0.0)) if top is None else top
    return np.ascontiguousarray(np.clip(f / max(top, 1.0) * 255.0 + 0.5, 0, 255).astype(np.uint8))


def read_raster_image(path) -> np.ndarray:
    """H x W x bands uint8. A float raster's NaN or infinite samples are refused (non_finite_problem) unless the
    raster declares them nodata: then they read as 0, and predict writes nodata (NODATA_LABEL) there."""
    with _open(path) as src:
        a = src.read()                                   # bands x H x W
        problem = non_finite_problem(path, src, a)
    if problem:
        raise PixelsegError(problem)
    return to_uint8(a)


def non_finite_problem(path, src, a: np.ndarray, window=None) -> str | None:
    """Why the float samples `a` (bands x h x w, read from the open raster `src` at `window`) cannot reach a
    model: NaN or infinite samples on pixels the raster does not declare nodata (issue 27: np.nan_to_num made
    them 0 silently). None for integer rasters and for non-finite samples only on declared nodata pixels."""
    if not np.issubdtype(a.dtype, np.floating):
        return None
    bad = ~np.isfinite(a).all(axis=0)
    if not bad.any():
        return None
    if declares_nodata(src):
        bad &= src.dataset_mask(window=window) > 0
    n = int(bad.sum())
    if n == 0:
        return None
    if window is None and n == bad.size:
        return (f"{path}: every pixel holds NaN or infinite values: the image holds no data; remove it "
                "(with its mask, in a dataset) or re-export it")
    return (f"{path}: {n:,} pixel(s) hold NaN or infinite values and the raster does not declare them nodata; "
            f"declare them nodata (gdal_edit.py -a_nodata nan {Path(path).name}) or fill them")


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


NODATA_LABEL = 255     # a label map's nodata value where its input raster had nodata (pixelseg's ignore index)


def nodata_mask(path, window=None) -> np.ndarray | None:
    """True where a raster has data (GDAL's dataset mask: nodata value, alpha band or internal mask), None for an
    input that declares none (every pixel is data) or that is not a raster."""
    if not is_raster(path):
        return None
    with _open(path) as src:
        return src.dataset_mask(window=window) > 0 if declares_nodata(src) else None


NODATA_SAMPLE_SIDE = 1024   # nodata_share reads the dataset mask decimated to at most this many pixels a side


def nodata_share(path) -> float | None:
    """The share of a raster's pixels that are nodata (0..1), from its dataset mask read decimated to at most
    NODATA_SAMPLE_SIDE a side (a COG's overviews serve it), so a big raster is not decoded whole. 1.0 only when
    every pixel is nodata: a decimated read that finds no data is confirmed block by block (stopping at the first
    data pixel). None for a raster that declares no nodata (every pixel is data) or a file that is not a raster."""
    if not is_raster(path):
        return None
    with _open(path) as src:
        if not declares_nodata(src):
            return None
        h, w = src.height, src.width
        step = max(1, -(-max(h, w) // NODATA_SAMPLE_SIDE))
        shape = (-(-h // step), -(-w // step))
        valid = int(np.count_nonzero(src.dataset_mask(out_shape=shape)))
        if valid or step == 1:
            return 1.0 - valid / (shape[0] * shape[1])
        if any(src.dataset_mask(window=win).any() for _, win in src.block_windows(1)):
            return 1.0 - 1.0 / (h * w)          # data on a few pixels the decimated read stepped over
        return 1.0


def last_band_is_alpha(path) -> bool:
    """Whether a raster's last band is declared alpha (a 4-band RGBA raster, not red, green, blue, near-infrared)."""
    from rasterio.enums import ColorInterp
    with _open(path) as src:
        return src.colorinterp[-1] == ColorInterp.alpha


def declares_nodata(src) -> bool:
    """Whether an open raster marks some pixels as no data (a nodata value, an alpha band or an internal mask)."""
    from rasterio.enums import MaskFlags
    return src.nodata is not None or any(flags != [MaskFlags.all_valid] for flags in src.mask_flag_enums)


def georeference_problem(image, mask) -> str | None:
    """Why a GeoTIFF mask does not lie on its GeoTIFF image's grid: both georeferenced, and their CRS or
    transform differ (same size, so a pixel-for-pixel check passes, yet every label is shifted on the ground).
    None when they agree, or when either is not a georeferenced raster (then pixels are paired as stored)."""
    if not (is_raster(image) and is_raster(mask)):
        return None
    a, b = georeference(image), georeference(mask)
    if a is None or b is None:
        return None
    (crs_a, t_a), (crs_b, t_b) = a, b
    if crs_a != crs_b:
        return (f"{mask}: its CRS ({crs_b.to_string()}) is not its image's {Path(image).name} ({crs_a.to_string()}); "
                "the labels would land on the wrong ground: reproject the mask onto the image's grid (e.g. gdalwarp "
                "-t_srs, -te and -tr of the image, nearest resampling)")
    size = max(abs(t_a.a), abs(t_a.e), 1e-12)
    if not t_a.almost_equals(t_b, precision=1e-6 * size):
        return (f"{mask}: its transform (origin {t_b.c:.6g}, {t_b.f:.6g}; pixel {t_b.a:.6g} x {t_b.e:.6g}) is not its "
                f"image's {Path(image).name} (origin {t_a.c:.6g}, {t_a.f:.6g}; pixel {t_a.a:.6g} x {t_a.e:.6g}): the "
                "labels are shifted or scaled on the ground; re-export the mask on the image's grid (gdalwarp -te/-tr "
                "of the image, nearest resampling)")
    return None


@contextlib.contextmanager
def label_writer(path, height: int, width: int, dtype: str, ref: tuple | None = None, colors=None, names=None,
                 confidence: bool = False, nodata: int | None = None):
    """An open label GeoTIFF (`dtype` uint8 or uint16), tiled and compressed, with the (crs, transform) `ref`
    when given, `colors` (one RGB per class) as its colour table and `names` as tags CLASS_<i>=<name> of band 1
    (gdalinfo and QGIS show them); with `confidence` a second uint8 band for the top class probability x 255.
    Written to a temporary file beside `path` and renamed into place when the block ends without an error."""
    import rasterio
    import rasterio.errors
    profile = {"driver": "GTiff", "height": height, "width": width, "count": 2 if confidence else 1, "dtype": dtype,
               "compress": "deflate"}
    if confidence and dtype != "uint8":
        raise PixelsegError("a confidence band goes with a uint8 label map (up to 256 classes)")
    if height >= 256 and width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if ref is not None:
        profile.update(crs=ref[0], transform=ref[1])
    if nodata is not None:      # the input's nodata pixels stay nodata in the label map (the ignore index)
        profile.update(nodata=nodata)
    with atomic_path(Path(path)) as tmp, warnings.catch_warnings():
        # a plain (not georeferenced) input gives a plain label map: rasterio's warning says just that
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(str(tmp), "w", **profile) as dst:
            if colors is not None and dtype == "uint8":
                dst.write_colormap(1, {i: tuple(int(v) for v in c) for i, c in enumerate(colors)})
            dst.set_band_description(1, "class")
            if names is not None:
                dst.update_tags(1, **{f"CLASS_{i}": str(n) for i, n in enumerate(names)})
            if confidence:
                dst.set_band_description(2, "confidence (top class probability x 255)")
            yield dst


def write_label_geotiff(path, labels: np.ndarray, like=None, colors=None, names=None,
                        confidence: np.ndarray | None = None) -> Path:
    """A label map (uint8, or uint16 over 256 classes) with the CRS and transform of `like` (the input
    raster) when it has them, class names as tags and, when given, `confidence` (H x W uint8) as band 2,
    through label_writer."""
    labels = np.asarray(labels)
    dtype = "uint8" if labels.max(initial=0) < 256 else "uint16"
    nodata = None
    valid = nodata_mask(like) if like is not None else None
    if valid is not None and valid.shape == labels.shape and not valid.all():
        nodata = NODATA_LABEL
        labels = np.where(valid, labels, nodata)
    with label_writer(path, labels.shape[0], labels.shape[1], dtype, georeference(like) if like is not None else None,
                      colors, names, confidence is not None, nodata) as dst:
        dst.write(labels.astype(dtype), 1)
        if confidence is not None:
            dst.write(np.asarray(confidence, np.uint8), 2)
    return Path(path)
