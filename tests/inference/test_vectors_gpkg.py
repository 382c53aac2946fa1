"""predict --vector gpkg: the GeoJSON's polygons, fields and CRS in a GeoPackage written by GDAL's own driver."""
from __future__ import annotations

import json

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
pyogrio = pytest.importorskip("pyogrio")
shapely = pytest.importorskip("shapely")
from rasterio.transform import from_origin  # noqa: E402

from pixelseg.data.classes import ClassTable  # noqa: E402
from pixelseg.inference.vectors import write_geojson, write_gpkg  # noqa: E402

CLASSES = ClassTable(("bg", "field", "road"), ((0, 0, 0),) * 3, 255)


def _label() -> np.ndarray:
    label = np.zeros((40, 50), np.uint8)
    label[5:25, 5:25] = 1                       # a square of class 1 with a hole
    label[12:16, 12:16] = 0
    label[30:33, 40:48] = 2
    label[35:38, 2:6] = 2                       # a second region of class 2
    return label


def _tif(path):
    with rasterio.open(path, "w", driver="GTiff", height=40, width=50, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000.0, 4100000.0, 0.3, 0.3)) as dst:
        dst.write(np.zeros((3, 40, 50), np.uint8))
    return path


@pytest.mark.parametrize("georeferenced", [True, False])
def test_gpkg_holds_the_geojsons_features_fields_and_crs(tmp_path, georeferenced):
    src = _tif(tmp_path / "scene.tif") if georeferenced else None
    doc = json.loads(write_geojson(tmp_path / "scene.geojson", _label(), CLASSES, src).read_text())
    path = write_gpkg(tmp_path / "scene.gpkg", _label(), CLASSES, src)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("scene.gpkg")] == ["scene.gpkg"]  # no temp left
    assert pyogrio.list_layers(path)[:, 0].tolist() == ["scene"]
    meta, _, geometry, fields = pyogrio.raw.read(path)
    assert meta["fields"].tolist() == ["class", "name", "area_px"] and meta["geometry_type"] == "Polygon"
    got = sorted(zip(fields[0].tolist(), fields[1].tolist(), fields[2].tolist(), shapely.from_wkb(geometry)),
                 key=lambda r: (r[0], r[2]))
    want = sorted(((f["properties"]["class"], f["properties"]["name"], f["properties"]["area_px"],
                    shapely.geometry.shape(f["geometry"])) for f in doc["features"]), key=lambda r: (r[0], r[2]))
    assert [r[:3] for r in got] == [r[:3] for r in want] == [(1, "field", 384), (2, "road", 12), (2, "road", 24)]
    assert all(g.equals(w) for (*_, g), (*_, w) in zip(got, want))
    if georeferenced:
        assert meta["crs"] == "EPSG:32633"
        assert got[0][3].bounds[0] == pytest.approx(500000.0 + 5 * 0.3)
    else:
        assert meta["crs"] is None and got[0][3].bounds[:3] == (5.0, 5.0, 25.0)


def test_predict_cli_writes_a_geopackage_per_image(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from pixelseg.cli import main
    from pixelseg.inference.bench import model_run
    run = model_run("lraspp", (64, 64), 3, tmp_path / "run")
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "in" / "p.png")
    assert main(["predict", str(run), str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--vector", "gpkg",
                 "--device", "cpu", "--backend", "torch"]) == 0
    label = np.asarray(Image.open(tmp_path / "out" / "p.png"))
    _, _, _, fields = pyogrio.raw.read(tmp_path / "out" / "p.gpkg")
    assert int(fields[2].sum()) == int(((label != 0) & (label != 255)).sum())
    # without pyogrio the job stops before predicting anything, naming the extra
    import builtins
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(
        ModuleNotFoundError("No module named 'pyogrio'", name="pyogrio")) if name == "pyogrio" else real(name, *a, **k))
    assert main(["predict", str(run), str(tmp_path / "in"), "--out", str(tmp_path / "out2"), "--vector", "gpkg",
                 "--device", "cpu", "--backend", "torch"]) == 2
    assert "'geo' extra" in capsys.readouterr().err and not (tmp_path / "out2").exists()
