"""Cases about the data: decompression bombs, class tables, masks, damaged or missing files."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from tests.hostile.corpus import H, W, bomb_jpeg, bomb_png, case, dataset, ds_with, image, images, mask

# a training command that stays short if a refusal is ever missing (the case then fails on its exit code)
TRAIN = ["train", "--data", "ds", "--out", "r", "--model", "fast_scnn", "--epochs", "1", "--image-size", "32",
         "--batch-size", "2", "--num-workers", "0", "--no-report", "--max-minutes", "0.2"]
RUN_OUT = ("r", "r/**")


def _png(a: np.ndarray) -> bytes:
    from io import BytesIO
    buf = BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_mask() -> bytes:
    from io import BytesIO
    buf = BytesIO()
    a = np.kron(np.random.default_rng(3).integers(0, 2, (3, 4)), np.ones((8, 8))).astype(np.uint8) * 200
    Image.fromarray(a).save(buf, format="JPEG", quality=60)
    return buf.getvalue()


# ------------------------------------------------------------------ decompression bombs
BOMBS = {"png": lambda: bomb_png(mode="RGB"), "jpg": bomb_jpeg}
for ext, make in BOMBS.items():
    for where in ("images", "masks"):
        case(f"verify-bomb-{where[:-1]}-{ext}", f"train0.{ext}", doctor=True)(
            lambda c, ext=ext, where=where, make=make: ["verify-dataset", ds_with(c, f"train/{where}/train0.{ext}", make())])
    case(f"predict-bomb-{ext}", f"bomb.{ext}", run=True, writes=("o", "o/**"))(
        lambda c, ext=ext, make=make: ["predict", c.run, _write(c.tmp / f"bomb.{ext}", make()), "--out", "o"])
    case(f"convert-bomb-image-{ext}", f"train0.{ext}", writes=("conv", "conv/**"))(
        lambda c, ext=ext, make=make: ["data", "convert", ds_with(c, f"train/images/train0.{ext}", make()),
                                       "--to", "folder", "--out", "conv"])
case("train-bomb-mask-png", "train0.png", writes=RUN_OUT)(
    lambda c: [*TRAIN[:2], ds_with(c, "train/masks/train0.png", bomb_png()), *TRAIN[3:]])
case("train-bomb-image-jpg", "train1.jpg", writes=RUN_OUT)(
    lambda c: [*TRAIN[:2], ds_with(c, "train/images/train1.jpg", bomb_jpeg()), *TRAIN[3:]])
case("convert-bomb-mask-png", "val1.png", writes=("conv", "conv/**"))(
    lambda c: ["data", "convert", ds_with(c, "val/masks/val1.png", bomb_png()), "--to", "folder", "--out", "conv"])
case("show-bomb-image-png", "val0.png", writes=("grid.png",))(
    lambda c: ["data", "show", ds_with(c, "val/images/val0.png", bomb_png(mode="RGB")), "--split", "val",
               "--out", "grid.png"])


@case("predict-bomb-among-images", "bomb.png", run=True, writes=("o", "o/**"))
def _(c):
    images(c.tmp / "imgs")
    _write(c.tmp / "imgs" / "bomb.png", bomb_png(mode="RGB"))
    return ["predict", c.run, "imgs", "--out", "o"]


@case("evaluate-pred-dir-bomb", "val0.png", writes=("preds/report", "preds/report/**"))
def _(c):
    dataset(c.tmp / "ds")
    _write(c.tmp / "preds" / "val0.png", bomb_png())
    mask(c.tmp / "preds" / "val1.png", 101)
    return ["evaluate", "--pred-dir", "preds", "--data", "ds"]


@case("verify-max-pixels-below-the-images", "--max-pixels", doctor=True)
def _(c):
    return ["verify-dataset", dataset(c.tmp / "ds"), "--max-pixels", "100"]


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ classes.json
CLASSES = {
    "ignore-256": ({"names": ["bg", "fg"], "ignore_index": 256}, "ignore_index"),
    "ignore-2e9": ({"names": ["bg", "fg"], "ignore_index": 2_000_000_000}, "ignore_index"),
    "ignore-minus-1": ({"names": ["bg", "fg"], "ignore_index": -1}, "ignore_index"),
    "ignore-string": ({"names": ["bg", "fg"], "ignore_index": "255"}, "ignore_index"),
    "ignore-float": ({"names": ["bg", "fg"], "ignore_index": 1.5}, "ignore_index"),
    "broken-json": ('{"names": ["bg", "fg"', "classes.json"),
    "empty-file": ("", "classes.json"),
    "a-list": ("[]", "classes.json"),
    "empty-names": ({"names": []}, "classes.json"),
    "names-a-string": ({"names": "bg,fg"}, "classes.json"),
    "duplicate-names": ({"names": ["bg", "bg"]}, "classes.json"),
    "too-few-colors": ({"names": ["bg", "fg"], "colors": [[0, 0, 0]]}, "classes.json"),
    "color-not-rgb": ({"names": ["bg", "fg"], "colors": [[0, 0], [1, 1]]}, "classes.json"),
    "color-300": ({"names": ["bg", "fg"], "colors": [[0, 0, 0], [300, 0, 0]]}, "classes.json"),
}
for name, (doc, word) in CLASSES.items():
    case(f"verify-classes-{name}", word, doctor=True)(
        lambda c, doc=doc: ["verify-dataset", dataset(c.tmp / "ds", classes=doc)])
for name in ("ignore-256",):
    case(f"train-classes-{name}", CLASSES[name][1], writes=RUN_OUT)(
        lambda c, doc=CLASSES[name][0]: [*TRAIN[:2], dataset(c.tmp / "ds", classes=doc), *TRAIN[3:]])


# ------------------------------------------------------------------ masks
def _mask_bytes(kind: str) -> bytes:
    a = np.zeros((H, W), np.uint8)
    a[:8] = 1
    if kind == "value-7":
        a[8:16, :8] = 7
    elif kind == "rgb":
        return _png(np.stack([a * 200, a * 10, a], -1))
    elif kind == "16bit-1000":
        buf = __import__("io").BytesIO()
        Image.fromarray(a.astype(np.uint16) * 1000).save(buf, format="PNG")
        return buf.getvalue()
    elif kind == "size":
        return _png(a[:16, :16])
    elif kind == "0-255":
        a = a * 255
    return _png(a)


for kind in ("value-7", "rgb", "16bit-1000", "size"):
    case(f"verify-mask-{kind}", "train1.png", doctor=True)(
        lambda c, kind=kind: ["verify-dataset", ds_with(c, "train/masks/train1.png", _mask_bytes(kind))])
for kind in ("value-7",):
    case(f"train-mask-{kind}", "train1.png", writes=RUN_OUT)(
        lambda c, kind=kind: [*TRAIN[:2], ds_with(c, "train/masks/train1.png", _mask_bytes(kind)), *TRAIN[3:]])
case("verify-mask-jpeg", "train0.jpg", doctor=True)(
    lambda c: ["verify-dataset", ds_with(c, "train/masks/train0.jpg", _jpeg_mask())])


@case("verify-masks-0-255-without-classes", "values", doctor=True)
def _(c):
    root = dataset(c.tmp / "ds")
    (root / "classes.json").unlink()
    for m in root.glob("*/masks/*.png"):
        m.write_bytes(_mask_bytes("0-255"))
    return ["verify-dataset", root]


def _all_ignore(c):
    root = dataset(c.tmp / "ds")
    for m in root.glob("*/masks/*.png"):
        m.write_bytes(_png(np.full((H, W), 255, np.uint8)))
    return root


case("verify-masks-all-ignore", "ds", doctor=True)(lambda c: ["verify-dataset", _all_ignore(c)])
case("train-masks-all-ignore", "ds", writes=RUN_OUT)(lambda c: [*TRAIN[:2], _all_ignore(c), *TRAIN[3:]])


# ------------------------------------------------------------------ damaged, odd or missing files
def _truncated(c, rel: str) -> bytes:
    p = image(c.tmp / "whole.png", 7)
    data = p.read_bytes()
    p.unlink()
    return data[: len(data) // 2]


FILES = {
    "truncated-image": ("train/images/train1.png", lambda c: _truncated(c, "")),
    "zero-byte-image": ("train/images/train1.png", lambda c: b""),
    "zero-byte-mask": ("val/masks/val1.png", lambda c: b""),
    "text-as-png-image": ("train/images/train1.png", lambda c: b"not an image at all\n"),
    "gif-image": ("train/images/train1.gif", lambda c: _gif()),
    "image-without-mask": ("train/masks/train1.png", lambda c: None),
    "mask-without-image": ("val/images/val1.png", lambda c: None),
}


def _gif() -> bytes:
    from io import BytesIO
    buf = BytesIO()
    Image.new("RGB", (W, H), (3, 4, 5)).save(buf, format="GIF")
    return buf.getvalue()


for name, (rel, data) in FILES.items():
    case(f"verify-{name}", rel.rsplit("/", 1)[1].split(".")[0], doctor=True)(
        lambda c, rel=rel, data=data: ["verify-dataset", ds_with(c, rel, data(c))])
for name in ("truncated-image",):
    rel, data = FILES[name]
    case(f"train-{name}", "train1", writes=RUN_OUT)(
        lambda c, rel=rel, data=data: [*TRAIN[:2], ds_with(c, rel, data(c)), *TRAIN[3:]])


@case("verify-dangling-symlink", "train1.png", doctor=True)
def _(c):
    root = ds_with(c, "train/images/train1.png")
    os.symlink(c.tmp / "gone.png", root / "train" / "images" / "train1.png")
    return ["verify-dataset", root]


@case("verify-folder-named-png", "train1.png", doctor=True)
def _(c):
    root = ds_with(c, "train/images/train1.png")
    (root / "train" / "images" / "train1.png").mkdir()
    return ["verify-dataset", root]


@case("train-one-image-dataset", "ds", writes=RUN_OUT)
def _(c):
    return [*TRAIN[:2], dataset(c.tmp / "ds", train=1, val=0), *TRAIN[3:]]


@case("verify-empty-folder", "empty")
def _(c):
    (c.tmp / "empty").mkdir()
    return ["verify-dataset", "empty"]


case("verify-missing-folder", "nowhere")(lambda c: ["verify-dataset", "nowhere"])
case("train-missing-data", "nowhere", writes=RUN_OUT)(lambda c: [*TRAIN[:2], "nowhere", *TRAIN[3:]])
case("convert-missing-src", "nowhere")(lambda c: ["data", "convert", "nowhere", "--to", "folder", "--out", "conv"])


@case("colormask-unknown-color", "train0.png", "[9, 9, 9]", "64 px", doctor=True)
def _(c):
    root = dataset(c.tmp / "ds", classes={"names": ["sky", "roof"], "colors": [[0, 0, 0], [255, 0, 0]]})
    for k, m in enumerate(sorted(root.glob("*/masks/*.png"))):
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[:8, :, 0] = 255
        if k == 0:
            rgb[8:16, :8] = 9
        m.write_bytes(_png(rgb))
    return ["verify-dataset", root, "--format", "colormask"]


@case("predict-truncated-image", "broken.png", run=True, writes=("o", "o/**"))
def _(c):
    p = image(c.tmp / "broken.png", 3)
    p.write_bytes(p.read_bytes()[:60])
    return ["predict", c.run, "broken.png", "--out", "o"]


@case("predict-missing-input", "nothing.png", run=True, writes=("o", "o/**"))
def _(c):
    return ["predict", c.run, "nothing.png", "--out", "o"]


@case("evaluate-pred-dir-wrong-size", "val0.png", writes=("preds/report", "preds/report/**"))
def _(c):
    dataset(c.tmp / "ds")
    mask(c.tmp / "preds" / "val0.png", 100, size=(16, 16))
    mask(c.tmp / "preds" / "val1.png", 101)
    return ["evaluate", "--pred-dir", "preds", "--data", "ds"]


@case("evaluate-pred-dir-value-out-of-range", "val0.png", writes=("preds/report", "preds/report/**"))
def _(c):
    dataset(c.tmp / "ds")
    mask(c.tmp / "preds" / "val0.png", 100, values=(0, 9))
    mask(c.tmp / "preds" / "val1.png", 101)
    return ["evaluate", "--pred-dir", "preds", "--data", "ds"]


case("evaluate-pred-dir-without-data", "--data")(
    lambda c: ["evaluate", "--pred-dir", images(c.tmp / "preds")])
