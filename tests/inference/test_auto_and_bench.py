"""`auto` is one rule (resolve_backend) for run folders and exported files alike, and `bench MODEL --int8`
works without a run: the random-weights model is calibrated on generated images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelseg.fileio import user_cache

from pixelseg.inference.predictor import Predictor
from pixelseg.inference.backends import resolve_backend


def test_auto_on_an_exported_file_is_never_torch(monkeypatch):
    import pixelseg.inference.backends as b
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu, exported=True) == "openvino"
    assert resolve_backend("auto", gpu, exported=True) == "onnxruntime"
    monkeypatch.setattr(b, "available", lambda name: name != "openvino")
    assert resolve_backend("auto", cpu) == "torch"
    assert resolve_backend("auto", cpu, exported=True) == "onnxruntime"


@pytest.mark.slow
def test_auto_on_a_run_folder_runs_the_cached_export_on_openvino(random_run, scene):
    ref = Predictor(random_run, "cpu", backend="torch")
    pred = Predictor(random_run, "cpu", backend="auto")
    assert pred.backend_name == resolve_backend("auto", torch.device("cpu")) == "openvino"
    assert list(user_cache("onnx").glob("model-*.onnx"))                # exported once, into the user's cache
    assert not (random_run / ".cache").exists()                          # never into the run folder
    assert (pred.predict(scene) == ref.predict(scene)).mean() >= 0.999


@pytest.mark.slow
def test_bench_int8_of_a_model_name_calibrates_on_generated_images():
    pytest.importorskip("onnxruntime")
    from pixelseg.inference.bench import bench
    logs: list[str] = []
    res = bench("unet", (64, 64), paths=["onnxruntime-int8"], iters=2, warmup=1, int8=True, encoder="resnet18",
                threads=1, log=logs.append)
    rows = {r["path"]: r for r in res["rows"]}
    assert set(rows) == {"eager", "onnxruntime-int8"}
    assert rows["onnxruntime-int8"]["p50_ms"] > 0
    assert any("generated images" in m for m in logs)


def test_generated_calibration_images_are_seeded_and_sized(tmp_path):
    from pixelseg.data.io import read_image
    from pixelseg.inference.bench import generated_calibration
    a = generated_calibration(tmp_path / "a", (40, 56), 3, 2)
    b = generated_calibration(tmp_path / "b", (40, 56), 3, 2)
    ia, ib = read_image(a / "calib_001.png"), read_image(b / "calib_001.png")
    assert ia.shape == (40, 56, 3) and np.array_equal(ia, ib) and ia.std() > 5
