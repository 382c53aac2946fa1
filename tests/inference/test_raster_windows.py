"""A georeferenced raster predicted block by block (bounded memory): the same labels as the whole array bar the
seams, the input's georeference, and the path predict takes for a raster above the decode limit."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

from pixelseg.data.geotiff import read_raster_image  # noqa: E402
from pixelseg.inference.predictor import Predictor  # noqa: E402
from pixelseg.inference.rasters import default_margin, predict_raster  # noqa: E402

TRANSFORM = from_origin(500000.0, 4100000.0, 0.3, 0.3)


def _paint(rng, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise with red (class 1) and green (class 2) rectangles: what the trained run below learns to see."""
    image = rng.integers(0, 70, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        cls = int(rng.integers(1, 3))
        y, x = int(rng.integers(0, h - 30)), int(rng.integers(0, w - 30))
        dy, dx = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        image[y:y + dy, x:x + dx] = (215, 45, 40) if cls == 1 else (45, 200, 60)
        mask[y:y + dy, x:x + dx] = cls
    return image, mask


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory):
    """A U-Net trained (about 20 s) on 64x64 crops at scale 1 of 128x128 scenes: a real model, so that
    seams between blocks would show as wrong labels, not as noise in random weights' near-uniform output."""
    import json

    import pixelseg
    root = tmp_path_factory.mktemp("rasters")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 2)):
        (root / "data" / split / "images").mkdir(parents=True)
        (root / "data" / split / "masks").mkdir(parents=True)
        for i in range(n):
            image, mask = _paint(rng, 128, 128)
            Image.fromarray(image).save(root / "data" / split / "images" / f"{i}.png")
            Image.fromarray(mask).save(root / "data" / split / "masks" / f"{i}.png")
    (root / "data" / "classes.json").write_text(json.dumps({"names": ["background", "red", "green"]}))
    return pixelseg.train(root / "data", "unet", out=str(root / "run"), epochs=12, scale=1.0, crop=(64, 64),
                          batch_size=8, lr=3e-3, num_workers=0, threads=1, augment="light", encoder="resnet18",
                          quiet=True, seed=0)


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
    # the trained model sees the scene: most of each rectangle gets its colour's class, the noise background
    assert (whole[25:95, 15:115] == 1).mean() > 0.8 and (whole[205:285, 135:245] == 2).mean() > 0.8
    assert (whole[:15, 150:] == 0).mean() > 0.8
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


def test_the_windowed_path_has_its_own_ceiling_checked_before_anything_is_written(scale_run, tmp_path, monkeypatch):
    """--max-raster-pixels (and the API's environment variable) bounds the block-by-block path: above it the
    raster is refused before the model loads, and a folder mixing it with a small image writes nothing."""
    from pixelseg.errors import PixelsegError
    from pixelseg.inference.rasters import MAX_RASTER_PIXELS_ENV
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "big.tif", _scene())
    Image.fromarray(_scene(40, 40)).save(tmp_path / "in" / "a_small.png")
    env = os.environ | {"PIXELSEG_MAX_PIXELS": "50000"}
    cmd = [sys.executable, "-m", "pixelseg", "predict", str(scale_run), str(tmp_path / "in"), "--out",
           str(tmp_path / "O"), "--device", "cpu"]
    bad = subprocess.run([*cmd, "--max-raster-pixels", "77999"], capture_output=True, text=True, env=env)
    lines = [ln for ln in bad.stderr.strip().splitlines() if ln.strip()]
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr
    assert "big.tif: declares 260x300 = 78,000 pixels, above the block-by-block limit of 77,999" in lines[0]
    assert "--max-raster-pixels 78000" in lines[0] and not (tmp_path / "O").exists()
    ok = subprocess.run([*cmd, "--max-raster-pixels", "78000"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in (tmp_path / "O").iterdir()) == ["a_small.png", "big.tif"]
    # the API: the same ceiling through the environment variable, before the first output
    monkeypatch.setenv("PIXELSEG_MAX_PIXELS", "50000")
    monkeypatch.setenv(MAX_RASTER_PIXELS_ENV, "1000")
    with pytest.raises(PixelsegError, match="block-by-block limit of 1,000"):
        Predictor(scale_run, device="cpu").predict_paths([tmp_path / "in"], tmp_path / "A")
    assert not (tmp_path / "A").exists() or not any((tmp_path / "A").iterdir())
