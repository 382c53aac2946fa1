"""GeoTIFF: multi-band images and masks read through rasterio, label maps written with the input's georeference."""
from __future__ import annotations

import numpy as np
import pytest

from pixelseg.data.io import image_channels, image_size, read_image, read_mask

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

from pixelseg.data.geotiff import georeference, write_label_geotiff  # noqa: E402

TRANSFORM = from_origin(500000.0, 4100000.0, 0.3, 0.3)


def _write(path, array, crs="EPSG:32633"):
    bands = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    with rasterio.open(path, "w", driver="GTiff", height=bands.shape[1], width=bands.shape[2], count=bands.shape[0],
                       dtype=str(bands.dtype), crs=crs, transform=TRANSFORM) as dst:
        dst.write(bands)
    return path


def test_multiband_geotiff_reads_like_an_image(tmp_path):
    data = np.random.default_rng(0).integers(0, 65535, (40, 60, 5), dtype=np.uint16)
    p = _write(tmp_path / "scene.tif", data)
    assert image_size(p) == (40, 60) and image_channels(p) == 5
    img = read_image(p)
    assert img.shape == (40, 60, 5) and img.dtype == np.uint8
    assert np.array_equal(img, (data.astype(np.float32) / 65535 * 255 + 0.5).astype(np.uint8))
    m = np.zeros((40, 60), np.uint8)
    m[5:9] = 3
    assert np.array_equal(read_mask(_write(tmp_path / "mask.tif", m)), m)


def test_label_map_keeps_the_inputs_georeference(tmp_path):
    src = _write(tmp_path / "scene.tif", np.zeros((300, 280, 3), np.uint8))
    labels = (np.arange(300 * 280).reshape(300, 280) % 7).astype(np.uint8)
    out = write_label_geotiff(tmp_path / "out" / "scene.tif", labels, like=src, colors=[(i, i, i) for i in range(7)])
    crs, transform = georeference(out)
    assert crs.to_epsg() == 32633 and transform == TRANSFORM
    with rasterio.open(out) as r:
        assert np.array_equal(r.read(1), labels)
    plain = write_label_geotiff(tmp_path / "plain.tif", labels)      # no reference given: none written
    assert georeference(plain) is None


def test_predicting_a_geotiff_writes_a_georeferenced_label_map(tmp_path):
    from pixelseg.inference.bench import model_run
    from pixelseg.inference.predictor import Predictor
    run = model_run("lraspp", (64, 64), 3, tmp_path / "run")
    (tmp_path / "in").mkdir()
    src = _write(tmp_path / "in" / "tile.tif", np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8))
    p = Predictor(run, device="cpu")
    written = p.predict_paths([src], tmp_path / "out")
    assert tmp_path / "out" / "tile.tif" in written and tmp_path / "out" / "tile.png" in written
    crs, transform = georeference(tmp_path / "out" / "tile.tif")
    assert crs.to_epsg() == 32633 and transform == TRANSFORM
    with rasterio.open(tmp_path / "out" / "tile.tif") as r:
        assert np.array_equal(r.read(1), p.predict(src))


def test_rasters_pass_the_decode_gate(tmp_path, monkeypatch):
    """A GeoTIFF read through rasterio is refused above the pixel limit like any image, before decoding."""
    from pixelseg.data.io import TooManyPixelsError, read_image, read_mask
    path = tmp_path / "big.tif"
    with rasterio.open(path, "w", driver="GTiff", width=300, height=200, count=3, dtype="uint8") as dst:
        dst.write(np.zeros((3, 200, 300), np.uint8))
    monkeypatch.setenv("PIXELSEG_MAX_PIXELS", "50000")
    with pytest.raises(TooManyPixelsError, match=r"big.tif: declares 300x200 = 60,000 pixels, above the limit of 50,000"):
        read_image(path)
    with pytest.raises(TooManyPixelsError, match="300x200"):
        read_mask(path)
    monkeypatch.setenv("PIXELSEG_MAX_PIXELS", "60000")
    assert read_image(path).shape == (200, 300, 3)
