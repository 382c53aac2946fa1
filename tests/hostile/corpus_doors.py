"""Cases about the doors opened since the first ring: unlabelled folders, the encoder options, LabelMe import,
vector output and the Hub dry run."""
from __future__ import annotations

import json

from tests.hostile.corpus import bomb_png, case, dataset, images, mask
from tests.hostile.corpus_data import RUN_OUT, TRAIN, _write


@case("train-unlabelled-folder-missing", "nope", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    return [*TRAIN, "--unlabelled", "nope", "--semi", "on"]


@case("train-unlabelled-folder-empty", "empty", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    (c.tmp / "empty").mkdir()
    return [*TRAIN, "--unlabelled", "empty", "--semi", "on"]


@case("train-unlabelled-folder-of-bombs", "bomb", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    for k in range(2):
        _write(c.tmp / "pool" / f"bomb{k}.png", bomb_png(mode="RGB"))
    return [*TRAIN, "--unlabelled", "pool", "--semi", "on"]


@case("train-semi-on-without-unlabelled-images", "--unlabelled", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    return [*TRAIN, "--semi", "on"]


@case("train-encoder-bn-on-a-model-without-encoder", "encoder_bn", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    return [*TRAIN, "--encoder-bn", "frozen"]


@case("import-labelme-with-an-unknown-label", "truck")
def _(c):
    dataset(c.tmp / "ds")
    images(c.tmp / "lm")
    shape = {"label": "truck", "points": [[1, 1], [10, 1], [10, 10]], "shape_type": "polygon"}
    for p in sorted((c.tmp / "lm").glob("*.png")):
        (p.with_suffix(".json")).write_text(json.dumps({"shapes": [shape], "imagePath": p.name, "imageData": None,
                                                        "imageHeight": 24, "imageWidth": 32}))
    return ["data", "import", "lm", "--into", "ds"]


@case("import-labelme-into-a-missing-dataset", "nope")
def _(c):
    images(c.tmp / "lm")
    return ["data", "import", "lm", "--into", "nope"]


@case("predict-vector-format-unknown", "--vector", run=True)
def _(c):
    images(c.tmp / "imgs")
    return ["predict", c.run, "imgs", "--out", "o", "--vector", "shp"]


@case("push-dry-run-into-the-run-folder", "inside the run folder", run=True)
def _(c):
    run = c.copy_run()
    return ["push", run, "me/x", "--dry-run", "--out", run / "look"]


@case("push-dry-run-into-a-folder-with-files", "look", run=True)
def _(c):
    mask(c.tmp / "look" / "keep.png", 1)
    return ["push", c.run, "me/x", "--dry-run", "--out", "look"]
