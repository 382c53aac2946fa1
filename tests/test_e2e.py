"""End to end on tiny synthetic data: train -> run folder -> predict -> evaluate, resume, budget, kill."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import pixelseg
from pixelseg.data.tools.synth import generate
from pixelseg.models import build_model
from pixelseg.run.checkpoints import load_state

pytestmark = pytest.mark.slow

TINY = dict(model="unet", image_size=(48, 56),   # not the data's 64x64: resizing both ways is exercised
            batch_size=4, num_workers=0, threads=2, quiet=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=16, n_val=6, size=(64, 64), seed=3)
    return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    return pixelseg.train(data, out=str(out), epochs=2, **TINY)


def test_run_folder_is_complete(run):
    for name in ("config.yaml", "classes.json", "model.json", "model.safetensors", "last.pt", "metrics.csv",
                 "metrics.json", "recipe.json"):
        assert (run / name).is_file(), name
    desc = json.loads((run / "model.json").read_text())
    assert desc["model"]["name"] == "unet" and desc["model"]["num_classes"] == 6
    assert desc["preprocessing"]["image_size"] == [48, 56]
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,")
    m = json.loads((run / "metrics.json").read_text())
    for key in ("mIoU", "pixel_accuracy", "mean_accuracy", "fw_iou", "mean_dice", "per_class"):
        assert key in m
    assert set(m["per_class"]) == set(desc["classes"]["names"])
    # the resolved config reproduces the run: no automatic (null) choice left in it
    cfg = pixelseg.config.load_config(run / "config.yaml")
    # the encoder whose ImageNet weights install with pixelseg, and those weights
    assert cfg.model.encoder == "tu-tf_efficientnet_lite0" and cfg.model.encoder_weights == "imagenet"
    assert cfg.data.in_channels == 3 and cfg.train.lr is not None
    # weights are safetensors and match the architecture: every key of the built model, at its shape
    state = load_file(str(run / "model.safetensors"))
    built = build_model("unet", 6, 3, "tu-tf_efficientnet_lite0").state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in built.items()}


def test_predict_any_size_and_palette(run, tmp_path):
    predictor = pixelseg.load(run, device="cpu")
    img = (np.random.default_rng(0).random((77, 101, 3)) * 255).astype(np.uint8)
    label = predictor.predict(img)
    assert label.shape == (77, 101) and label.dtype == np.uint8 and label.max() < 6
    gray = img[:, :, 0]
    assert predictor.predict(gray).shape == (77, 101)           # a gray input is converted to the model's channels
    Image.fromarray(img).save(tmp_path / "odd.png")
    written = predictor.predict_paths([tmp_path / "odd.png"], tmp_path / "out", overlay=True)
    names = sorted(p.name for p in written)
    assert names == ["odd.png", "odd_overlay.png"]
    with Image.open(tmp_path / "out" / "odd.png") as im:
        assert im.mode == "P" and im.size == (101, 77)
        pal = im.getpalette()[:6 * 3]
        assert np.array_equal(np.asarray(im), label)
    assert pal[3:6] == list(predictor.classes.colors[1])


def test_evaluate_matches_training_and_pred_dir(run, data, tmp_path):
    """Three routes to the same number: the metric training saved, evaluate(RUN), and evaluate of the
    label maps `predict` wrote. Any drift between training, prediction and evaluation shows here."""
    saved = json.loads((run / "metrics.json").read_text())
    direct = pixelseg.evaluate(run, data, device="cpu")
    assert direct["mIoU"] == pytest.approx(saved["mIoU"], abs=1e-9)
    pixelseg.load(run, device="cpu").predict_paths([data / "val" / "images"], tmp_path / "pred")
    via_files = pixelseg.evaluate(data=data, pred_dir=tmp_path / "pred")
    assert via_files["mIoU"] == pytest.approx(direct["mIoU"], abs=1e-9)
    assert via_files["per_class"] == direct["per_class"]


def test_refuses_to_overwrite_a_run(run, data):
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(pixelseg.PixelsegError, match="already holds files"):
        pixelseg.train(data, out=str(run), epochs=1, **TINY)
    assert (run / "model.safetensors").read_bytes() == before


def test_time_budget_stops_cleanly(data, tmp_path):
    t0 = time.time()
    run = pixelseg.train(data, out=str(tmp_path / "t"), max_minutes=0.05, **TINY)
    assert time.time() - t0 < 60
    m = json.loads((run / "metrics.json").read_text())
    assert m["stopped"].startswith("time budget")
    assert (run / "model.safetensors").is_file() and (run / "last.pt").is_file()
    assert m["train_seconds"] < 0.05 * 60 + 15   # the budget covers training and validation


def test_sigterm_saves_and_resume_finishes(data, tmp_path):
    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "pixelseg.cli", "train", "--data", str(data), "--out", str(out), "--epochs", "500",
           "--model", "unet", "--image-size", "64", "--batch-size", "4", "--num-workers", "0", "--threads", "1"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    assert (out / "last.pt").exists(), p.communicate()[1][-2000:]
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "--resume" in err
    done = load_state(out / "last.pt")["state"]
    resume = [sys.executable, "-m", "pixelseg.cli", "train", "--out", str(out), "--resume",
              "--epochs", str(done["epoch"] + 1), "--num-workers", "0", "--threads", "1"]
    r = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_state(out / "last.pt")["state"]["epoch"] == done["epoch"] + 1
    assert json.loads((out / "metrics.json").read_text())["stopped"] is None
