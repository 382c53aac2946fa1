"""A georeferenced raster predicted block by block (bounded memory): the same labels as the whole array bar the
seams, the input's georeference, and the path predict takes for a raster above the decode limit."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

from pixelseg.data.geotiff import read_raster_image  # noqa: E402
from pixelseg.inference.predictor import Predictor  # noqa: E402
from pixelseg.inference.rasters import default_margin, predict_raster  # noqa: E402

TRANSFORM = from_origin(500000.0, 4100000.0, 0.3, 0.3)


@pytest.fixture(scope="module")
def scale_run(make_scale_run):
    return make_scale_run("rasters", 1.0)


def _scene(h=300, w=260):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    image[20:150, 10:120] = (220, 40, 40)
    image[160:290, 130:250] = (40, 200, 60)
    image[100:200, 60:200, 2] = 230
    return image


def _write(path, image):
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1], count=image.shape[2],
                       dtype="uint8", crs="EPSG:32633", transform=TRANSFORM) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    return path


def test_blocks_give_the_whole_arrays_labels_bar_the_seams(scale_run, tmp_path):
    src = _write(tmp_path / "scene.tif", _scene())
    p = Predictor(scale_run, device="cpu")
    assert default_margin(p) == 64
    whole = p.predict(read_raster_image(src))
    out = tmp_path / "out" / "scene.tif"
    r = predict_raster(p, src, out, block=128)
    assert (r["blocks"], r["height"], r["width"]) == (9, 300, 260) and r["seconds"] >= 0
    with rasterio.open(out) as o:
        labels = o.read(1)
        assert o.crs.to_epsg() == 32633 and o.transform == TRANSFORM and o.dtypes[0] == "uint8"
        assert o.colormap(1)[0][:3] == tuple(int(v) for v in p.classes.colors[0])
    assert labels.shape == whole.shape == (300, 260)
    assert len(np.unique(whole)) > 1
    assert (labels == whole).mean() >= 0.99
    assert not list(out.parent.glob(".*tmp*"))      # written atomically: no temporary file left beside it


def test_predict_takes_the_windowed_path_above_the_limit_and_still_refuses_a_png(scale_run, tmp_path):
    image = _scene()
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "big.tif", image)
    Image.fromarray(image).save(tmp_path / "big.png")
    env = os.environ | {"PIXELSEG_MAX_PIXELS": "50000"}
    ok = subprocess.run([sys.executable, "-m", "pixelseg", "predict", str(scale_run), str(tmp_path / "in" / "big.tif"),
                         "--out", str(tmp_path / "O"), "--device", "cpu"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    with rasterio.open(tmp_path / "O" / "big.tif") as o:
        assert o.shape == (300, 260) and o.crs.to_epsg() == 32633 and o.transform == TRANSFORM
    bad = subprocess.run([sys.executable, "-m", "pixelseg", "predict", str(scale_run), str(tmp_path / "big.png"),
                          "--out", str(tmp_path / "P"), "--device", "cpu"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0
    lines = [ln for ln in bad.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "declares 260x300 = 78,000 pixels, above the limit of 50,000" in lines[0], bad.stderr
