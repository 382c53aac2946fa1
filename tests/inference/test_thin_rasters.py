"""Rasters one pixel thin (issue 27: "1-row rasters get defined behaviour"): predict gives a label map of the
input's own shape and georeference, read whole or block by block, and a one-row image trains."""
from __future__ import annotations

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

from pixelseg.inference.predictor import Predictor  # noqa: E402

TRANSFORM = from_origin(500000.0, 4100000.0, 0.5, 0.5)


def _write(path, h: int, w: int):
    a = np.random.default_rng(h * 1000 + w).integers(0, 256, (3, h, w), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=TRANSFORM) as dst:
        dst.write(a)
    return path


@pytest.mark.parametrize("h, w", [(1, 300), (300, 1), (1, 1)])
@pytest.mark.parametrize("windowed", [False, True], ids=["whole", "block-by-block"])
def test_a_one_pixel_thin_raster_gets_a_label_map_of_its_own_shape(random_run, tmp_path, monkeypatch, h, w,
                                                                   windowed):
    if windowed:      # above the decode limit: read block by block (inference/rasters.py)
        if h * w == 1:
            pytest.skip("one pixel is never above the decode limit")
        monkeypatch.setenv("PIXELSEG_MAX_PIXELS", "100")
    src = _write(tmp_path / "thin.tif", h, w)
    written = Predictor(random_run, device="cpu").predict_paths([src], tmp_path / "out")
    tif = [p for p in written if p.suffix == ".tif"]
    assert len(tif) == 1
    with rasterio.open(tif[0]) as o:
        assert o.shape == (h, w) and o.crs.to_epsg() == 32633 and o.transform == TRANSFORM
        assert int(o.read(1).max()) < 3                    # the run's three classes
