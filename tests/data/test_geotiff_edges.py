"""GeoTIFF inputs at their edges (issue 27, item 2), in the library: NaN or infinite samples never reach a model
as numbers (refused, or read as 0 on pixels the raster declares nodata, which predict marks nodata), float64
scales like float32, and an image's decoded bytes over every band are gated as well as its pixels."""
from __future__ import annotations

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from pixelseg.data import geotiff
from pixelseg.data.io import read_image
from pixelseg.errors import PixelsegError

from tests.helpers.rasters import write_geotiff


_write = write_geotiff


def _floats(dtype=np.float32) -> np.ndarray:
    return (np.arange(3 * 16 * 20, dtype=np.float64).reshape(3, 16, 20) % 200 + 1).astype(dtype)


def test_nan_on_undeclared_pixels_is_refused_naming_the_file_and_the_fix(tmp_path):
    a = _floats()
    a[:, :4] = np.nan
    with pytest.raises(PixelsegError, match=r"nan\.tif: 80 pixel\(s\) hold NaN or infinite values.*-a_nodata nan"):
        read_image(_write(tmp_path / "nan.tif", a))


def test_nan_declared_nodata_reads_as_zero_and_is_nodata(tmp_path):
    a = _floats()
    a[:, :4] = np.nan
    path = _write(tmp_path / "nodata.tif", a, nodata=float("nan"))
    img = read_image(path)
    assert img.dtype == np.uint8 and (img[:4] == 0).all()
    assert np.array_equal(img[4:], geotiff.to_uint8(a)[4:])          # the rest scaled by the finite maximum
    valid = geotiff.nodata_mask(path)
    assert not valid[:4].any() and valid[4:].all()


def test_an_infinite_nodata_sample_does_not_blank_the_image(tmp_path):
    """np.nan_to_num's default made +inf 3.4e38, the maximum every other sample was scaled by (all 0)."""
    a = _floats()
    a[0, 0, 0] = np.inf
    img = geotiff.to_uint8(a)
    assert img[1:].max() == 255 and img[0, 0, 0] == 0


def test_float64_scales_like_float32(tmp_path):
    a32 = read_image(_write(tmp_path / "f32.tif", _floats(np.float32)))
    a64 = read_image(_write(tmp_path / "f64.tif", _floats(np.float64)))
    assert np.array_equal(a32, a64) and a64.max() == 255


def test_an_image_raster_is_gated_on_its_decoded_bytes_over_every_band(tmp_path, monkeypatch):
    """200 float64 bands of 40 x 40 pixels: 2.4 MB decoded, far inside a 10,000-pixel limit in pixels but not
    in bytes (10,000 x 4): refused from the header, naming the bands and the --max-pixels that would pass."""
    monkeypatch.setenv("PIXELSEG_MAX_PIXELS", "10000")
    path = _write(tmp_path / "deep.tif", np.zeros((200, 40, 40), np.float64))
    with pytest.raises(PixelsegError, match=r"deep\.tif: declares 40x40 pixels x 200 bands .*--max-pixels 640000"):
        read_image(path)
    monkeypatch.setenv("PIXELSEG_MAX_PIXELS", "640000")
    assert read_image(path).shape == (40, 40, 200)
