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


def test_label_features_trace_regions_with_holes_and_class_names(tmp_path):
    from pixelseg.data.classes import ClassTable
    from pixelseg.inference.vectors import label_features, write_geojson
    label = np.zeros((40, 50), np.uint8)
    label[5:25, 5:25] = 1                       # a square of class 1 with a 4x4 hole
    label[12:16, 12:16] = 0
    label[30:33, 40:48] = 2                     # a bar of class 2
    label[0, 49] = 255                          # ignored: no feature
    names = ("bg", "field", "road")
    feats = label_features(label, names)
    assert sorted((f["properties"]["name"], f["properties"]["area_px"]) for f in feats) == [("field", 400 - 16),
                                                                                           ("road", 24)]
    field = next(f for f in feats if f["properties"]["class"] == 1)
    assert len(field["geometry"]["coordinates"]) == 2                      # outer ring + the hole
    xs = [x for x, _ in field["geometry"]["coordinates"][0]]
    assert min(xs) == 5 and max(xs) == 25                                  # pixel edges
    # georeferenced: the same regions in the raster's CRS, which the file names
    src = _write(tmp_path / "scene.tif", np.zeros((40, 50, 3), np.uint8))
    import json
    doc = json.loads(write_geojson(tmp_path / "scene.geojson", label, ClassTable(names, ((0, 0, 0),) * 3, 255),
                                   src).read_text())
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    field = next(f for f in doc["features"] if f["properties"]["class"] == 1)
    xs = [x for x, _ in field["geometry"]["coordinates"][0]]
    assert min(xs) == pytest.approx(500000.0 + 5 * 0.3) and max(xs) == pytest.approx(500000.0 + 25 * 0.3)
    assert field["properties"]["area_px"] == 400 - 16


def test_predict_cli_writes_vectors_beside_the_label_maps(tmp_path, capsys):
    import json

    from pixelseg.cli import main
    from pixelseg.inference.bench import model_run
    run = model_run("lraspp", (64, 64), 3, tmp_path / "run")
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "tile.tif", np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8))
    from PIL import Image
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "in" / "p.png")
    assert main(["predict", str(run), str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--vector", "geojson",
                 "--device", "cpu", "--backend", "torch"]) == 0
    geo = json.loads((tmp_path / "out" / "tile.geojson").read_text())
    plain = json.loads((tmp_path / "out" / "p.geojson").read_text())
    assert "crs" in geo and "crs" not in plain and "pixel edges" in plain["pixelseg"]["coordinates"]
    label = np.asarray(Image.open(tmp_path / "out" / "p.png"))
    expected = int(((label != 0) & (label != 255)).sum())
    assert sum(f["properties"]["area_px"] for f in plain["features"]) == expected


def test_output_geotiffs_name_the_classes_and_carry_confidence_with_uncertainty(tmp_path):
    from PIL import Image

    from pixelseg.cli import main
    from pixelseg.inference.bench import model_run
    run = model_run("lraspp", (64, 64), 3, tmp_path / "run")
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "tile.tif", np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8))
    assert main(["predict", str(run), str(tmp_path / "in"), "--out", str(tmp_path / "plain"), "--device", "cpu",
                 "--backend", "torch"]) == 0
    with rasterio.open(tmp_path / "plain" / "tile.tif") as r:
        assert r.count == 1 and r.descriptions[0] == "class"
        assert r.tags(1)["CLASS_2"] == "class2"
    assert main(["predict", str(run), str(tmp_path / "in"), "--out", str(tmp_path / "unc"), "--uncertainty",
                 "--device", "cpu", "--backend", "torch"]) == 0
    with rasterio.open(tmp_path / "unc" / "tile.tif") as r:
        assert r.count == 2 and r.descriptions[1].startswith("confidence")
        assert r.crs.to_epsg() == 32633 and r.transform == TRANSFORM
        labels, conf = r.read(1), r.read(2)
    assert np.array_equal(labels, np.asarray(Image.open(tmp_path / "unc" / "tile.png")))
    assert np.array_equal(conf, np.asarray(Image.open(tmp_path / "unc" / "tile_confidence.png")))


def test_a_mask_off_its_images_grid_is_refused_with_how_they_differ(tmp_path):
    """Same size, so a pixel-for-pixel check passes, but the mask's CRS or origin differs: training and the
    doctor refuse it, saying how (the silent misalignment of issue 27)."""
    from rasterio.transform import from_origin as origin

    from pixelseg.data.tools.checks import require_clean
    from pixelseg.data.tools.doctor import diagnose
    from pixelseg.data.formats import open_dataset
    from pixelseg.errors import PixelsegError

    def dataset(root, mask_crs="EPSG:32633", mask_transform=TRANSFORM):
        for split in ("train", "val"):
            (root / split / "images").mkdir(parents=True)
            (root / split / "masks").mkdir(parents=True)
            for i in range(2):
                _write(root / split / "images" / f"t{i}.tif", np.zeros((32, 32, 3), np.uint8))
                m = np.zeros((32, 32), np.uint8)
                m[4:10] = 1
                bands = m[None]
                with rasterio.open(root / split / "masks" / f"t{i}.tif", "w", driver="GTiff", height=32, width=32,
                                   count=1, dtype="uint8", crs=mask_crs, transform=mask_transform) as dst:
                    dst.write(bands)
        return root

    ok = open_dataset(dataset(tmp_path / "ok"))
    require_clean(ok)
    assert not [p for p in diagnose(ok.root).problems if "transform" in p or "CRS" in p]
    shifted = open_dataset(dataset(tmp_path / "shifted", mask_transform=origin(500003.0, 4100000.0, 0.3, 0.3)))
    with pytest.raises(PixelsegError, match=r"t0\.tif: its transform \(origin 500003, 4.1e\+06.*is not its image's"):
        require_clean(shifted)
    other_crs = dataset(tmp_path / "crs", mask_crs="EPSG:32632")
    problems = diagnose(other_crs).problems
    assert any("its CRS (EPSG:32632) is not its image's t0.tif (EPSG:32633)" in p for p in problems)


def test_predicted_geotiffs_keep_the_inputs_nodata(tmp_path):
    from pixelseg.inference.bench import model_run
    from pixelseg.inference.predictor import Predictor
    from pixelseg.inference.rasters import predict_raster
    run = model_run("lraspp", (64, 64), 3, tmp_path / "run")
    data = np.random.default_rng(0).integers(1, 255, (3, 80, 96), dtype=np.uint8)
    data[:, :20, :30] = 0                                    # a nodata corner
    src = tmp_path / "in.tif"
    with rasterio.open(src, "w", driver="GTiff", height=80, width=96, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=TRANSFORM, nodata=0) as dst:
        dst.write(data)
    p = Predictor(run, device="cpu")
    p.predict_paths([src], tmp_path / "out")
    predict_raster(p, src, tmp_path / "blocks.tif", block=32)
    for out in (tmp_path / "out" / "in.tif", tmp_path / "blocks.tif"):
        with rasterio.open(out) as r:
            labels = r.read(1)
            assert r.nodata == 255
        assert (labels[:20, :30] == 255).all() and (labels[20:, 30:] != 255).all()
    plain = _write(tmp_path / "full.tif", data.transpose(1, 2, 0) + 1)          # no nodata declared
    p.predict_paths([plain], tmp_path / "out2")
    with rasterio.open(tmp_path / "out2" / "full.tif") as r:
        assert r.nodata is None
