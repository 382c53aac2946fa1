"""The doctor on raster datasets (issue 27): channel counts training cannot reconcile (a 200-band GeoTIFF among RGB
images) and images whose every pixel is nodata are problems naming the file; what training converts as documented
(gray among RGB) or images mostly nodata are warnings; clean RGB and all-3-band GeoTIFF datasets raise neither."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixelseg.cli import main
from pixelseg.data.tools.doctor import diagnose

from tests.helpers import dataset_makers as M
from tests.helpers.rasters import write_geotiff

rasterio = pytest.importorskip("rasterio")

from pixelseg.data.geotiff import nodata_share  # noqa: E402

STEMS = {"train": ["t0", "t1", "t2", "t3"], "val": ["v0", "v1"]}


_tif = write_geotiff


def _noise(seed: int, bands: int, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, (bands, M.H, M.W)).astype(dtype)


def _dataset(root, image=None):
    """Two classes, masks as PNG; each image written by `image(path_without_suffix, seed)` (default: an RGB PNG)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"names": ["bg", "field"]}))
    seed = 0
    for split, stems in STEMS.items():
        for stem in stems:
            seed += 1
            base = root / split / "images" / stem
            if image is None:
                M.image(base.with_suffix(".png"), seed)
            else:
                image(base, seed)
            M.save_gray(root / split / "masks" / f"{stem}.png", M.blocks(seed, [0, 1]))
    return root


def _replace(root, stem: str, write):
    """train/images/<stem>: its image removed and written again by `write(path_without_suffix)`."""
    for p in (root / "train" / "images").glob(f"{stem}.*"):
        p.unlink()
    return write(root / "train" / "images" / stem)


def _png(path, seed: int):
    M.image(path, seed)
    return path


NIR = dict(photometric="MINISBLACK")   # GDAL would write a 4-band uint8 raster as RGBA: here band 4 is data


def _geotiffs(bands: int, **profile):
    return lambda base, seed: _tif(base.with_suffix(".tif"), _noise(seed, bands), **profile)


def _text(lines) -> str:
    return "\n".join(lines)


def _about(lines, *words) -> list[str]:
    return [x for x in lines if any(w in x for w in words)]


# ------------------------------------------------------------------ no false alarms
def test_clean_rgb_dataset_gets_no_channel_or_nodata_finding(tmp_path):
    rep = diagnose(_dataset(tmp_path / "ds"))
    assert rep.problems == []
    assert _about(rep.warnings, "channel", "nodata") == []


def test_all_3_band_geotiffs_with_a_little_nodata_get_no_finding(tmp_path):
    def write(base, seed):
        a = _noise(seed, 3)
        a[:, :2] = 0                                   # two rows of nodata: 8 %, normal at a scene's edge
        _tif(base.with_suffix(".tif"), a, nodata=0)
    rep = diagnose(_dataset(tmp_path / "ds", write))
    assert rep.problems == []
    assert _about(rep.warnings, "channel", "nodata") == []


def test_same_band_count_other_than_rgb_is_fine(tmp_path):
    rep = diagnose(_dataset(tmp_path / "ds", _geotiffs(12)))     # all 12 bands: training takes 12
    assert rep.problems == [] and _about(rep.warnings, "channel") == []


# ------------------------------------------------------------------ mixed channel counts
def test_200_band_geotiff_among_rgb_is_a_problem_naming_it(tmp_path, capsys):
    root = _dataset(tmp_path / "ds")
    odd = _replace(root, "t0", lambda b: _tif(b.with_suffix(".tif"), _noise(9, 200)))
    rep = diagnose(root)
    found = _about(rep.problems, "channel")
    assert len(found) == 1, rep.problems
    line = found[0]
    assert line.startswith(f"{odd}: 200 channel(s) where most images have 3")
    assert "3 channel(s) in 5 image(s), 200 channel(s) in 1 image(s)" in line
    assert "cannot convert 200" in line and "gdal_translate -b 1 -b 2 -b 3" in line
    assert main(["verify-dataset", str(root)]) == 1
    assert str(odd) in capsys.readouterr().err


def test_rgb_among_12_band_rasters_is_a_problem(tmp_path):
    root = _dataset(tmp_path / "ds", _geotiffs(12))
    odd = _replace(root, "t1", lambda b: _png(b.with_suffix(".png"), 77))
    line = _text(_about(diagnose(root).problems, "channel"))
    assert line.startswith(f"{odd}: 3 channel(s) where most images have 12")
    assert "give it the 12 bands" in line


def test_gray_among_rgb_is_a_warning_not_a_problem(tmp_path):
    root = _dataset(tmp_path / "ds")
    gray = root / "train" / "images" / "t2.png"
    Image.fromarray(np.asarray(Image.open(gray).convert("L"))).save(gray)
    rep = diagnose(root)
    assert _about(rep.problems, "channel") == []
    assert any(w.startswith(f"{gray}: 1 channel(s)") and "gray repeated" in w for w in rep.warnings), rep.warnings


def test_near_infrared_band_among_rgb_rasters_is_a_warning(tmp_path):
    root = _dataset(tmp_path / "ds", _geotiffs(3))
    odd = _replace(root, "t0", lambda b: _tif(b.with_suffix(".tif"), _noise(9, 4), **NIR))
    rep = diagnose(root)
    assert _about(rep.problems, "channel") == []
    assert any(w.startswith(f"{odd}: 4 channel(s)") and "drops the 4th" in w for w in rep.warnings), rep.warnings


def test_rgb_among_rgbn_rasters_is_a_problem_but_among_rgba_a_warning(tmp_path):
    root = _dataset(tmp_path / "nir", _geotiffs(4, **NIR))              # red, green, blue, near-infrared
    odd = _replace(root, "t0", lambda b: _tif(b.with_suffix(".tif"), _noise(9, 3)))
    line = _text(_about(diagnose(root).problems, "channel"))
    assert line.startswith(f"{odd}: 3 channel(s) where most images have 4") and "fill it with 255" in line

    root = _dataset(tmp_path / "rgba", lambda b, s: _tif(b.with_suffix(".tif"), _noise(s, 4), alpha=True, **NIR))
    odd = _replace(root, "t0", lambda b: _tif(b.with_suffix(".tif"), _noise(9, 3)))
    rep = diagnose(root)
    assert _about(rep.problems, "channel") == []
    assert any(w.startswith(f"{odd}: 3 channel(s)") and "opaque alpha" in w for w in rep.warnings), rep.warnings


# ------------------------------------------------------------------ nodata
@pytest.mark.parametrize("kind", ["nodata-value", "nan-nodata", "internal-mask"])
def test_an_image_whose_every_pixel_is_nodata_is_a_problem(tmp_path, kind):
    root = _dataset(tmp_path / "ds", _geotiffs(3))

    def write(base):
        path = base.with_suffix(".tif")
        if kind == "nodata-value":
            return _tif(path, np.zeros((3, M.H, M.W), np.uint8), nodata=0)
        if kind == "nan-nodata":
            return _tif(path, np.full((3, M.H, M.W), np.nan, np.float32), nodata=float("nan"))
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):   # data everywhere, an internal mask saying none of it is
            _tif(path, _noise(9, 3))
            with rasterio.open(path, "r+") as dst:
                dst.write_mask(np.zeros((M.H, M.W), np.uint8))
        return path

    odd = _replace(root, "t3", write)
    rep = diagnose(root)
    found = _about(rep.problems, "nodata")
    assert found == [f"{odd}: every pixel is nodata; the image teaches nothing and its mask's labels are noise: "
                     "remove it (with its mask) or fix its nodata value (gdal_edit.py -a_nodata / -unsetnodata)"]


def test_all_nan_without_declared_nodata_says_every_pixel(tmp_path):
    root = _dataset(tmp_path / "ds", _geotiffs(3))
    odd = _replace(root, "t3", lambda b: _tif(b.with_suffix(".tif"), np.full((3, M.H, M.W), np.nan, np.float32)))
    assert f"{odd}: every pixel holds NaN or infinite values" in _text(diagnose(root).problems)


def test_an_image_mostly_nodata_is_a_warning(tmp_path):
    root = _dataset(tmp_path / "ds", _geotiffs(3))

    def write(base):
        a = np.zeros((3, M.H, M.W), np.uint8)
        a[:, 0, :10] = 200                              # 10 of 768 pixels hold data: 98.7 % nodata
        return _tif(base.with_suffix(".tif"), a, nodata=0)

    odd = _replace(root, "t3", write)
    rep = diagnose(root)
    assert _about(rep.problems, "nodata") == []
    assert [w for w in rep.warnings if "nodata" in w] == [
        f"1 image(s) are over 95% nodata, e.g. {odd} (98.7%): they teach little; crop them to their data or drop them"]


def test_nodata_share_of_a_big_raster_reads_decimated_and_confirms_all_nodata(tmp_path):
    """3000 x 3000 is read at 1000 x 1000: a single data pixel the decimated read steps over still makes the raster
    'almost', not 'every pixel', nodata; one with no data at all is 1.0."""
    tiled = dict(tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    empty = np.zeros((3000, 3000), np.uint8)
    assert nodata_share(_tif(tmp_path / "empty.tif", empty, nodata=0, **tiled)) == 1.0
    one = empty.copy()
    one[1501, 2702] = 7
    share = nodata_share(_tif(tmp_path / "one.tif", one, nodata=0, **tiled))
    assert 0.99 < share < 1.0
    assert nodata_share(_tif(tmp_path / "none.tif", one, **tiled)) is None     # declares no nodata: all data
    assert nodata_share(_png(tmp_path / "plain.png", 1)) is None
