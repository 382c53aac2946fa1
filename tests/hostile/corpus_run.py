"""Cases about run folders: model.json broken in every way issue 16 lists, weights missing, truncated or from
another model, folders that are not runs, and the commands that read a run."""
from __future__ import annotations

import json

from tests.hostile.corpus import RUN_CLASSES, case, dataset, images, model_json

PREDICT = ["imgs", "--out", "o"]


def _edit(**fields):
    """model.json edits: "a.b": value sets a nested key, "a.b": ... (Ellipsis) deletes it."""
    def edit(d):
        for key, value in fields.items():
            *parents, last = key.split("__")
            node = d
            for p in parents:
                node = node[p]
            if value is ...:
                del node[last]
            else:
                node[last] = value
    return edit


MODEL_JSON = {
    "image-size-zero": _edit(preprocessing__image_size=[0, 0]),
    "image-size-string": _edit(preprocessing__image_size="160"),
    "image-size-one-value": _edit(preprocessing__image_size=[32]),
    "image-size-negative": _edit(preprocessing__image_size=[-32, 32]),
    "image-size-huge": _edit(preprocessing__image_size=[100000, 100000]),
    "in-channels-zero": _edit(preprocessing__in_channels=0, model__in_channels=0),
    "mean-wrong-length": _edit(preprocessing__mean=[0.5]),
    "std-zero": _edit(preprocessing__std=[0, 0, 0]),
    "std-string": _edit(preprocessing__std="1"),
    "missing-model": _edit(model=...),
    "missing-preprocessing": _edit(preprocessing=...),
    "missing-classes": _edit(classes=...),
    "missing-model-name": _edit(model__name=...),
    "unknown-model-name": _edit(model__name="unet3000"),
    "wrong-format-tag": _edit(format="pixelseg-run/99"),
    "no-format-tag": _edit(format=...),
    "num-classes-disagree": _edit(model__num_classes=7),
    "resize-unknown": _edit(preprocessing__resize="squash"),
    "threshold-out-of-range": _edit(model__sigmoid_threshold=3),
}
for name, edit in MODEL_JSON.items():
    @case(f"predict-model-json-{name}", "model.json", run=True, writes=("o", "o/**"))
    def _(c, edit=edit):
        images(c.tmp / "imgs")
        model_json(c.copy_run(), edit)
        return ["predict", "run", *PREDICT]

RAW_MODEL_JSON = {"broken-json": '{"format": "pixelseg-run/1", "model": {', "empty": "", "a-list": "[1, 2]",
                  "null": "null"}
for name, text in RAW_MODEL_JSON.items():
    @case(f"predict-model-json-{name}", "model.json", run=True, writes=("o", "o/**"))
    def _(c, text=text):
        images(c.tmp / "imgs")
        (c.copy_run() / "model.json").write_text(text)
        return ["predict", "run", *PREDICT]


@case("predict-weights-missing", "model.safetensors", run=True, writes=("o", "o/**"))
def _(c):
    images(c.tmp / "imgs")
    (c.copy_run() / "model.safetensors").unlink()
    return ["predict", "run", *PREDICT]


@case("predict-weights-truncated", "model.safetensors", run=True, writes=("o", "o/**"))
def _(c):
    images(c.tmp / "imgs")
    w = c.copy_run() / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    return ["predict", "run", *PREDICT]


@case("predict-weights-from-another-model", "model.safetensors", run=True, writes=("o", "o/**"))
def _(c):
    images(c.tmp / "imgs")
    run = c.copy_run()
    model_json(run, _edit(model__name="lraspp"))      # fast_scnn's weights under an lraspp description
    return ["predict", "run", *PREDICT]


@case("predict-run-is-not-a-run", "imgs", writes=("o", "o/**"))
def _(c):
    images(c.tmp / "imgs")
    return ["predict", "imgs", *PREDICT]


@case("predict-run-missing", "norun", writes=("o", "o/**"))
def _(c):
    images(c.tmp / "imgs")
    return ["predict", "norun", *PREDICT]


@case("predict-fake-onnx", "model.onnx", writes=("o", "o/**"))
def _(c):
    images(c.tmp / "imgs")
    (c.tmp / "model.onnx").write_bytes(b"\x08\x07not really onnx")
    return ["predict", "model.onnx", *PREDICT]


@case("evaluate-model-json-image-size-zero", "model.json", run=True, writes=("run/report", "run/report/**"))
def _(c):
    dataset(c.tmp / "ds", classes=RUN_CLASSES)
    model_json(c.copy_run(), MODEL_JSON["image-size-zero"])
    return ["evaluate", "run", "--data", "ds"]


@case("evaluate-run-without-data", "--data", run=True)
def _(c):
    return ["evaluate", c.copy_run(), "--no-report"]


@case("evaluate-classes-disagree-with-run", "ds", run=True, writes=("run/report", "run/report/**"))
def _(c):
    dataset(c.tmp / "ds", classes={"names": ["a", "b", "c", "d", "e"]})
    return ["evaluate", c.copy_run(), "--data", "ds", "--no-report"]


@case("evaluate-missing-split", "test", run=True)
def _(c):
    dataset(c.tmp / "ds", classes=RUN_CLASSES)
    return ["evaluate", c.copy_run(), "--data", "ds", "--split", "test", "--no-report"]


@case("export-model-json-image-size-string", "model.json", run=True, writes=("run/export", "run/export/**"))
def _(c):
    model_json(c.copy_run(), MODEL_JSON["image-size-string"])
    return ["export", "run"]


@case("serve-model-json-broken", "model.json", run=True)
def _(c):
    (c.copy_run() / "model.json").write_text("{")
    return ["serve", "run", "--port", "0"]


@case("report-not-a-run", "ds")
def _(c):
    dataset(c.tmp / "ds")
    return ["report", "ds"]


@case("compare-broken-metrics-json", "m.json")
def _(c):
    (c.tmp / "m.json").write_text("{not json")
    (c.tmp / "m2.json").write_text("{not json either")
    return ["compare", "m.json", "m2.json"]


@case("compare-metrics-json-without-iou", "m.json")
def _(c):
    (c.tmp / "m.json").write_text(json.dumps({"hello": 1}))
    (c.tmp / "m2.json").write_text(json.dumps({"hello": 2}))
    return ["compare", "m.json", "m2.json"]


@case("tune-threshold-softmax-run", "run", run=True)
def _(c):
    dataset(c.tmp / "ds", classes=RUN_CLASSES)
    return ["tune-threshold", c.copy_run(), "--data", "ds"]


@case("train-resume-without-a-run", "r")
def _(c):
    dataset(c.tmp / "ds")
    return ["train", "--data", "ds", "--out", "r", "--resume", "--epochs", "1"]


@case("train-init-from-a-damaged-run", "model.json", run=True, writes=("r", "r/**"))
def _(c):
    dataset(c.tmp / "ds")
    (c.copy_run() / "model.json").write_text("[]")
    return ["train", "--data", "ds", "--out", "r", "--epochs", "1", "--init-from", "run", "--no-report"]
