"""Cases of issue 27's second ring: settings at their edges (audit, calibrate, suggest, predict's windows and
threads, train's scale and crops, a model.json temperature), GeoTIFF inputs that are NaN-filled, float64, 200
bands deep or bombs in pixels or in bands, and the measuring verbs on runs and splits with nothing to measure
(all-ignore masks, one image, another class table)."""
from __future__ import annotations

import json

import numpy as np

from tests.hostile.corpus import RUN_CLASSES, Ctx, case, dataset, images, model_json
from tests.hostile.corpus_data import RUN_OUT, TRAIN
from tests.helpers.rasters import write_geotiff

# cases that load torch before they refuse: one of each kind runs by default, these with PIXELSEG_HOSTILE=all
SLOW: set[str] = set()


def _slow(id_: str) -> str:
    SLOW.add(id_)
    return id_


# ------------------------------------------------------------------ settings at their edges
# (verb argv before the flag, flag, bad values, the command needs the run / a dataset with the run's classes)
AUDIT = ["--data", "ds", "--out", "aud"]
EDGE_FLAGS = [
    ("audit", AUDIT, "--folds", ["-1", "x"]),
    ("audit", AUDIT, "--fold-minutes", ["0", "-1", "nan", "inf"]),
    ("audit", AUDIT, "--threshold", ["0", "-1", "nan", "1", "1.5"]),
    ("audit", AUDIT, "--gallery", ["-1"]),
    ("calibrate", ["--data", "ds"], "--sample-pixels", ["0", "-5", "1e20"]),
    ("suggest", ["imgs", "--out", "sug"], "--n", ["0", "-1"]),
    ("suggest", ["imgs", "--out", "sug"], "--gallery", ["-1"]),
    ("predict", ["imgs", "--out", "o"], "--overlap", ["1.5", "nan"]),
    ("predict", ["imgs", "--out", "o"], "--tta", ["nan", "1000"]),
    ("predict", ["imgs", "--out", "o"], "--threads", ["100000"]),
    ("serve", ["--port", "0"], "--threads", ["100000"]),
    ("bench", ["--iters", "1"], "--threads", ["100000"]),
]
LOADS_TORCH = {"audit--threshold=1", "audit--threshold=1.5", "predict--tta=1000", "predict--threads=100000",
               "serve--threads=100000", "bench--threads=100000"}
for verb, rest, flag, values in EDGE_FLAGS:
    for v in values:
        id_ = f"{verb}{flag}={v}"

        @case(_slow(id_) if id_ in LOADS_TORCH and id_ != "predict--threads=100000" else id_, flag, run=True,
              writes=("o", "o/**"))
        def _(c: Ctx, verb=verb, rest=rest, flag=flag, v=v):
            dataset(c.tmp / "ds", classes=RUN_CLASSES)
            images(c.tmp / "imgs")
            return [verb, c.run, *rest, flag, v]


@case("audit--folds-1", "--folds", run=True)
def _(c):
    dataset(c.tmp / "ds", classes=RUN_CLASSES)
    return ["audit", c.copy_run(), "--data", "ds", "--folds", "1", "--out", "aud"]


@case(_slow("audit--folds-more-than-images"), "--folds", run=True)
def _(c):
    dataset(c.tmp / "ds", classes=RUN_CLASSES)
    return ["audit", c.copy_run(), "--data", "ds", "--folds", "1000", "--out", "aud"]


@case(_slow("audit--folds-on-a-one-image-split"), "--folds", "--folds 0", run=True)
def _(c):
    dataset(c.tmp / "ds", classes=RUN_CLASSES, train=1, val=1)
    return ["audit", c.copy_run(), "--data", "ds", "--folds", "2", "--out", "aud"]


PREDICT_TILES = {"0-0": ["0", "0"], "4": ["4"], "7-100": ["7", "100"], "8-0": ["8", "0"], "nan": ["nan"]}
for name, values in PREDICT_TILES.items():
    id_ = f"predict--tile={name}"
    case(id_ if name == "4" else _slow(id_) if name == "7-100" else id_, "--tile", run=True, writes=("o", "o/**"))(
        lambda c, values=values: ["predict", c.run, images(c.tmp / "imgs"), "--out", "o", "--tile", *values])

TRAIN_EDGES = {"--scale": ["0", "-1", "nan", "inf", "1000"], "--crop": ["0", "-8", "nan", "100000"],
               "--crop-focus": ["-0.1", "1.5", "nan"], "--threads": ["100000"]}
for flag, values in TRAIN_EDGES.items():
    for v in values:
        case(f"train{flag}={v}", flag, writes=RUN_OUT)(
            lambda c, flag=flag, v=v: [*TRAIN[:2], dataset(c.tmp / "ds"), *TRAIN[3:], flag, v])
case("train--crop-three-values", "--crop", writes=RUN_OUT)(
    lambda c: [*TRAIN[:2], dataset(c.tmp / "ds"), *TRAIN[3:], "--crop", "64", "64", "64"])


# a model.json temperature nobody's calibrate wrote: refused where the run is read, before any image
TEMPERATURES = {"zero": 0.0, "negative": -1.0, "nan": float("nan"), "inf": float("inf"), "huge": 1e300,
                "tiny": 1e-300, "string": "warm"}
for name, t in TEMPERATURES.items():
    id_ = f"predict-model-json-temperature-{name}"

    @case(id_ if name in ("inf", "tiny") else _slow(id_), "model.json", "temperature", run=True,
          writes=("o", "o/**"))
    def _(c, t=t):
        images(c.tmp / "imgs")
        model_json(c.copy_run(), lambda d: d["model"].__setitem__("temperature", t))
        return ["predict", "run", "imgs", "--out", "o"]


@case(_slow("calibrate-model-json-temperature-inf"), "model.json", "temperature", run=True)
def _(c):
    dataset(c.tmp / "ds", classes=RUN_CLASSES)
    model_json(c.copy_run(), lambda d: d["model"].__setitem__("temperature", float("inf")))
    return ["calibrate", "run", "--data", "ds"]


# ------------------------------------------------------------------ GeoTIFF rasters
_tif = write_geotiff


def _empty_tif(path, height: int, width: int, bands: int, dtype: str):
    """A header-only raster (sparse, tiled, compressed: a few KB on disk) declaring height x width x bands."""
    import rasterio
    from rasterio.transform import from_origin
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=bands, dtype=dtype,
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 1, 1), tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate", sparse_ok=True):
        pass
    return path


def _floats(nan_rows: int = 8, fill=np.nan) -> np.ndarray:
    a = np.random.default_rng(0).random((3, 24, 32)).astype(np.float32) * 1000
    a[:, :nan_rows] = fill
    return a


RASTERS = {   # name -> (writer of the file at a path, what the last line names)
    "nan-float32": (lambda p: _tif(p, _floats()), "NaN"),
    "all-nan": (lambda p: _tif(p, _floats(24)), "NaN"),
    "inf-float32": (lambda p: _tif(p, _floats(fill=np.inf)), "infinite"),
    "pixel-bomb": (lambda p: _empty_tif(p, 200_000, 200_000, 1, "uint8"), "--max-pixels"),
    "band-bomb": (lambda p: _empty_tif(p, 3000, 3000, 200, "float64"), "bands"),
}


def _geo_cases():
    from pixelseg.data import geotiff
    if not geotiff.available():          # rasterio is the `geo` extra: no GeoTIFFs without it
        return
    for name, (write, word) in RASTERS.items():
        # predict reads a raster above the pixel limit by window (docs/deployment.md), up to its own ceiling:
        # 200000 x 200000 is above it and refused before the model loads (it would run for days)
        said = "--max-raster-pixels" if name == "pixel-bomb" else word
        case(f"predict-geotiff-{name}", f"{name}.tif", said, run=True, writes=("o", "o/**"))(
            lambda c, name=name, write=write: ["predict", c.run, write(c.tmp / f"{name}.tif"), "--out", "o"])
        case(f"verify-geotiff-{name}", "train0.tif", word, doctor=True)(
            lambda c, write=write: ["verify-dataset", _ds_with_tif(c, write)])
        # training compares each mask with its image's header size first: a bomb's 24 x 32 mask is refused as
        # not matching it, before anything is decoded (the last line names train0.tif either way)
        id_ = f"train-geotiff-{name}"
        names = ("train0.tif",) if "bomb" in name else ("train0.tif", word)
        case(id_ if name == "nan-float32" else _slow(id_), *names, writes=RUN_OUT)(
            lambda c, write=write: [*TRAIN[:2], _ds_with_tif(c, write), *TRAIN[3:]])
    # above the pixel limit predict reads by window: one window of 200 float64 bands is still tens of GiB
    case("predict-geotiff-windowed-band-bomb", "wide.tif", "bands", run=True, writes=("o", "o/**"))(
        lambda c: ["predict", c.run, _empty_tif(c.tmp / "wide.tif", 20_000, 20_000, 200, "float64"), "--out", "o"])
    # 200 bands that fit in memory: the model takes 3 channels, and a dataset mixing them with RGB cannot train
    case(_slow("predict-geotiff-200-bands"), "bands200.tif", "--in-channels", run=True, writes=("o", "o/**"))(
        lambda c: ["predict", c.run, _tif(c.tmp / "bands200.tif",
                                          np.random.default_rng(1).integers(0, 256, (200, 24, 32), dtype=np.uint8)),
                   "--out", "o"])
    case(_slow("train-geotiff-200-bands-among-rgb"), "channels", "--in-channels", writes=RUN_OUT)(
        lambda c: [*TRAIN[:2], _ds_with_tif(c, lambda p: _tif(p, np.random.default_rng(1).integers(
            0, 256, (200, 24, 32), dtype=np.uint8))), *TRAIN[3:]])


def _ds_with_tif(c: Ctx, write):
    """The clean dataset with train0's image a GeoTIFF written by `write` (its PNG removed)."""
    root = dataset(c.tmp / "ds")
    (root / "train" / "images" / "train0.png").unlink()
    write(root / "train" / "images" / "train0.tif")
    return root


_geo_cases()


# ------------------------------------------------------------------ measuring verbs with nothing to measure
def _all_ignore(c: Ctx):
    from PIL import Image
    root = dataset(c.tmp / "ds", classes=RUN_CLASSES)
    for m in root.glob("*/masks/*.png"):
        Image.fromarray(np.full((24, 32), 255, np.uint8)).save(m)
    return root


ALL_IGNORE = {
    "evaluate": lambda run: ["evaluate", run, "--data", "ds", "--no-report", "--json", "m.json"],
    "calibrate": lambda run: ["calibrate", run, "--data", "ds"],
    "audit-val": lambda run: ["audit", run, "--data", "ds", "--split", "val", "--out", "aud"],
    "audit-train": lambda run: ["audit", run, "--data", "ds", "--folds", "0", "--out", "aud"],
    "report": lambda run: ["report", run, "--data", "ds"],
    "compare": lambda run: ["compare", run, run, "--data", "ds"],
}
for verb, argv in ALL_IGNORE.items():
    id_ = f"{verb}-on-an-all-ignore-split"

    @case(id_ if verb == "evaluate" else _slow(id_), "ds", "all ignore", run=True)
    def _(c, argv=argv):
        _all_ignore(c)
        return argv(c.copy_run())


OTHER_CLASSES = {"names": ["a", "b", "c", "d", "e"]}
for verb, argv in {"calibrate": ["--data", "ds"], "audit": ["--data", "ds", "--folds", "0", "--out", "aud"]}.items():
    @case(_slow(f"{verb}-classes-disagree-with-run"), "ds", "class table", run=True)
    def _(c, verb=verb, argv=argv):
        dataset(c.tmp / "ds", classes=OTHER_CLASSES)
        return [verb, c.copy_run(), *argv]


@case("compare-metrics-of-a-run-without-validation", "run", run=True)
def _(c):
    """A run folder with no metrics.json (never validated): compare names it and what to give instead."""
    run = c.copy_run()
    (c.tmp / "m.json").write_text(json.dumps({"per_class": {"class0": {"iou": 0.5}}, "mIoU": 0.5}))
    return ["compare", run, "m.json"]
