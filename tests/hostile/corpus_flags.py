"""Cases about the command line itself: numeric flags at 0 / -1 / huge / not a number, unknown names,
config files, and outputs aimed at a file or at the inputs."""
from __future__ import annotations

from tests.hostile.corpus import RUN_CLASSES, add, case, dataset, images

# flag, bad value -> the flag must be named. Values a flag legitimately takes (--seed 0, --aux-weight 0, ...)
# are left out; "huge" is a value no run can mean (a fraction above 1, an image larger than any memory).
TRAIN_FLAGS = {
    "--epochs": ["0", "-1", "two"], "--batch-size": ["0", "-1", "1e3"], "--lr": ["0", "-1", "nan", "inf"],
    "--image-size": ["0", "-5", "big", "100000"], "--num-workers": ["-1"], "--seed": ["-1", str(2**40)],
    "--threads": ["0"], "--val-fraction": ["0", "1.5"], "--max-minutes": ["0", "-1"], "--accumulate": ["0"],
    "--clip-grad": ["-1"], "--ema": ["1.5"], "--label-smoothing": ["2"], "--warmup-steps": ["-1"],
    "--checkpoint-minutes": ["-1"], "--weight-decay": ["inf"], "--in-channels": ["0"],
}
for flag, values in TRAIN_FLAGS.items():
    for v in values:
        short = [] if flag == "--epochs" else ["--epochs", "1"]
        add(f"train{flag}={v}", ["train", "--data", "ds", "--out", "r", flag, v, *short], flag, writes=("r", "r/**"))

PREDICT_FLAGS = {"--batch-size": ["0", "-1", "x"], "--threads": ["0"], "--alpha": ["2", "-1"],
                 "--overlap": ["1", "-0.5", "0.999"], "--tile": ["0", "-8"], "--tta": ["0", "-1"], "--max-frames": ["0"]}
for flag, values in PREDICT_FLAGS.items():
    for v in values:
        add(f"predict{flag}={v}", ["predict", "RUN", "imgs", "--out", "o", flag, v], flag, run=True)
add("predict--tile-three-values", ["predict", "RUN", "imgs", "--out", "o", "--tile", "8", "8", "8"], "--tile",
    run=True)

OTHER_FLAGS = [
    (["verify-dataset", "ds", "--workers"], ["0", "-1"]), (["verify-dataset", "ds", "--max-pixels"], ["0", "-1", "x"]),
    (["data", "synth", "--out", "syn", "--train"], ["0", "-1"]), (["data", "synth", "--out", "syn", "--size"], ["0"]),
    (["data", "show", "ds", "--out", "g.png", "--n"], ["0"]), (["models", "--size"], ["0"]),
    (["models", "--classes"], ["0"]), (["report", "RUN", "--gallery"], ["-1"]), (["bench", "RUN", "--iters"], ["0"]),
    (["export", "RUN", "--min-agreement"], ["2"]), (["quickstart", "--max-minutes"], ["0"]),
    (["serve", "RUN", "--port"], ["-1", "70000"]), (["serve", "RUN", "--workers"], ["0"]),
    (["serve", "RUN", "--max-upload-mb"], ["0"]), (["serve", "RUN", "--timeout"], ["-1"]),
    (["serve", "RUN", "--max-pixels"], ["0"]), (["serve", "RUN", "--max-batch"], ["0"]),
]
for argv, values in OTHER_FLAGS:
    for v in values:
        add(f"{argv[0]}{argv[-1]}={v}", [*argv, v], argv[-1], run="RUN" in argv)

# ------------------------------------------------------------------ names that do not exist
NAMES = [
    ("train-unknown-model", ["train", "--data", "ds", "--out", "r", "--model", "unet3000"], "unet3000"),
    ("train-unknown-encoder", ["train", "--data", "ds", "--out", "r", "--model", "unet", "--encoder", "resnet7"],
     "resnet7"),
    ("train-unknown-format", ["train", "--data", "ds", "--format", "pascal"], "--format"),
    ("train-unknown-loss", ["train", "--data", "ds", "--out", "r", "--loss", "ce+dicey"], "dicey"),
    ("train-unknown-augment", ["train", "--data", "ds", "--out", "r", "--augment", "wild"], "wild"),
    ("train-unknown-schedule", ["train", "--data", "ds", "--schedule", "step"], "--schedule"),
    ("train-class-weights-text", ["train", "--data", "ds", "--out", "r", "--class-weights", "heavy"],
     "--class-weights"),
    ("predict-unknown-backend", ["predict", "RUN", "imgs", "--out", "o", "--backend", "tensorrt"], "--backend"),
    ("predict-unknown-device", ["predict", "RUN", "imgs", "--out", "o", "--device", "gpu7"], "gpu7"),
    ("serve-unknown-backend", ["serve", "RUN", "--backend", "tensorrt"], "tensorrt"),
    ("export-unknown-format", ["export", "RUN", "--format", "tflite"], "--format"),
    ("bench-unknown-model", ["bench", "unet3000"], "unet3000"),
    ("models-unknown-family", ["models", "--family", "transformerz"], "transformerz"),
    ("download-unknown-dataset", ["data", "download", "imagenet", "--out", "dl"], "imagenet"),
    ("verify-unknown-format", ["verify-dataset", "ds", "--format", "pascal"], "--format"),
    ("verify-wrong-format", ["verify-dataset", "ds", "--format", "cityscapes"], "ds"),
]
for id_, argv, name in NAMES:
    add(id_, argv, name, run="RUN" in argv, writes=("r", "r/**", "o", "o/**", "dl", "dl/**"))

# ------------------------------------------------------------------ config files
CONFIGS = {
    "unknown-key": ("train:\n  lr: 0.01\n  learning_rate: 0.1\n", "learning_rate"),
    "unknown-section": ("optimizer:\n  lr: 0.01\n", "optimizer"),
    "wrong-type": ("train:\n  epochs: many\n", "train.epochs"),
    "bad-yaml": ("train:\n  lr: [0.01\n", "c.yaml"),
    "a-list": ("- train\n- lr\n", "c.yaml"),
    "section-not-a-mapping": ("train: 5\n", "train"),
    "negative": ("train:\n  batch_size: -4\n", "train.batch_size"),
    "bad-choice": ("train:\n  schedule: step\n", "train.schedule"),
    "binary-garbage": ("\x00\x01\x02\xff", "c.yaml"),
}
for name, (text, word) in CONFIGS.items():
    @case(f"train-config-{name}", word, writes=("r", "r/**"))
    def _(c, text=text):
        dataset(c.tmp / "ds")
        (c.tmp / "c.yaml").write_bytes(text.encode("latin-1"))
        return ["train", "--config", "c.yaml", "--data", "ds", "--out", "r", "--epochs", "1"]
add("train-config-missing", ["train", "--config", "none.yaml", "--data", "ds", "--out", "r"], "none.yaml",
    writes=("r", "r/**"))
case("train-config-is-a-folder", "ds", writes=("r", "r/**"))(
    lambda c: ["train", "--config", dataset(c.tmp / "ds"), "--out", "r"])


# ------------------------------------------------------------------ outputs onto files and inputs
@case("train-out-onto-a-file", "notes.txt")
def _(c):
    dataset(c.tmp / "ds")
    (c.tmp / "notes.txt").write_text("keep")
    return ["train", "--data", "ds", "--out", "notes.txt", "--epochs", "1"]


@case("train-out-onto-the-dataset", "ds")
def _(c):
    dataset(c.tmp / "ds")
    return ["train", "--data", "ds", "--out", "ds", "--epochs", "1"]


@case("predict-out-onto-a-file", "notes.txt", run=True)
def _(c):
    images(c.tmp / "imgs")
    (c.tmp / "notes.txt").write_text("keep")
    return ["predict", c.run, "imgs", "--out", "notes.txt"]


@case("predict-out-onto-the-inputs", "imgs", run=True)
def _(c):
    images(c.tmp / "imgs")
    return ["predict", c.run, "imgs", "--out", "imgs"]


@case("convert-out-onto-a-file", "notes.txt")
def _(c):
    dataset(c.tmp / "ds")
    (c.tmp / "notes.txt").write_text("keep")
    return ["data", "convert", "ds", "--to", "folder", "--out", "notes.txt"]


@case("convert-out-onto-the-source", "ds")
def _(c):
    dataset(c.tmp / "ds")
    return ["data", "convert", "ds", "--to", "folder", "--out", "ds"]


@case("synth-out-onto-a-file", "notes.txt")
def _(c):
    (c.tmp / "notes.txt").write_text("keep")
    return ["data", "synth", "--out", "notes.txt", "--train", "2", "--val", "1", "--size", "32"]


@case("verify-json-onto-a-mask", "val0.png")
def _(c):
    dataset(c.tmp / "ds")
    return ["verify-dataset", "ds", "--json", "ds/val/masks/val0.png"]


@case("show-out-onto-an-image", "train0.png")
def _(c):
    dataset(c.tmp / "ds")
    return ["data", "show", "ds", "--out", "ds/train/images/train0.png"]


@case("export-out-onto-the-weights", "model.safetensors", run=True)
def _(c):
    run = c.copy_run()
    return ["export", run, "--out", run / "model.safetensors"]


@case("evaluate-json-onto-the-run-description", "model.json", run=True)
def _(c):
    dataset(c.tmp / "ds", classes=RUN_CLASSES)
    run = c.copy_run()
    return ["evaluate", run, "--data", "ds", "--no-report", "--json", run / "model.json"]
