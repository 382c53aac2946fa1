"""One source of probabilities (Predictor.probs): after `pixelseg calibrate` the notebook's Result.probs, the maps
of `predict --uncertainty`, serve's confidence and suggest all see the run's temperature, and agree."""
from __future__ import annotations

import dataclasses
import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import pixelseg
from pixelseg.inference.bench import model_run
from pixelseg.run.folder import RunFolder

TEMPERATURE = 2.5

pytestmark = pytest.mark.slow      # trains or starts a process: not in the fast subset


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A run whose model.json holds a temperature, as `pixelseg calibrate` leaves it, and one input image."""
    base = tmp_path_factory.mktemp("probs")
    run = model_run("lraspp", (32, 32), 3, base / "run")
    folder = RunFolder(run)
    folder.write_info(dataclasses.replace(folder.info(), temperature=TEMPERATURE))
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(image).save(base / "scene.png")
    return run, base / "scene.png"


def test_result_probs_are_the_calibrated_probabilities_of_predict_uncertainty(calibrated, tmp_path):
    run, image = calibrated
    result = pixelseg.predict(run, image, device="cpu", backend="torch")[0]
    predictor = pixelseg.load(run, device="cpu", backend="torch")
    assert predictor.temperature == TEMPERATURE
    np.testing.assert_array_equal(result.probs, predictor.probs([image])[0])

    # the temperature is applied: the raw softmax of the same logits is sharper
    logits = predictor.predict_logits([np.asarray(Image.open(image))])[0]
    raw = torch.softmax(logits, 0).numpy()
    np.testing.assert_allclose(result.probs, torch.softmax(logits / TEMPERATURE, 0).numpy(), atol=1e-6)
    assert raw.max(0).mean() > result.probs.max(0).mean() + 0.01

    out = tmp_path / "pred"
    p = subprocess.run([sys.executable, "-m", "pixelseg", "predict", str(run), str(image), "--out", str(out),
                        "--uncertainty", "--uncertainty-npy", "--device", "cpu", "--backend", "torch"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    confidence = np.load(out / "scene_confidence.npy")
    np.testing.assert_allclose(confidence, result.probs.max(0), atol=1e-6)
    png = np.asarray(Image.open(out / "scene_confidence.png"), np.float32) / 255
    assert np.abs(png - result.probs.max(0)).max() <= 1 / 255
    np.testing.assert_array_equal(np.asarray(Image.open(out / "scene.png")), result.labels)


def test_serve_answers_the_same_confidence(calibrated):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from pixelseg.serve.app import create_app

    run, image = calibrated
    want = pixelseg.load(run, device="cpu", backend="torch").probs([image])[0].max(0)
    with TestClient(create_app(run, device="cpu", backend="torch")) as client:
        r = client.post("/v1/segment?format=confidence", files={"image": image.read_bytes()})
    assert r.status_code == 200, r.text
    assert float(r.headers["X-Temperature"]) == TEMPERATURE
    got = np.asarray(Image.open(io.BytesIO(r.content)), np.float32) / 255
    assert np.abs(got - want).max() <= 1 / 255
