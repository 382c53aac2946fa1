"""The trackers and the Hub as a user meets them: `pixelseg train --logger ...`, `pixelseg push`, `pixelseg pull`,
`pixelseg predict hf://...`, in subprocesses started from another working directory (tests/hub_fake.py stands in
for the Hub: the real huggingface_hub client code path, no network)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixelseg
from pixelseg.data.synth import generate
from pixelseg.run import RunFolder

sys.path.insert(0, str(Path(__file__).parent / "engine"))
import engine_tinynet  # noqa: E402

TINY_FLAGS = ["--model", engine_tinynet.NAME, "--image-size", "32", "--batch-size", "4", "--num-workers", "0",
              "--threads", "1", "--lr", "0.01", "--augment", "light", "--epochs", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=8, n_val=4, size=(32, 32), seed=5)
    return root


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_", "HF_"))}
    src = str(Path(pixelseg.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def _tinynet_cli(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The pixelseg CLI with the tiny test net registered (tests/engine/engine_tinynet.py)."""
    return subprocess.run([sys.executable, engine_tinynet.__file__, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env or _env())


def _history(run: Path) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_train_logger_mlflow_from_another_folder(data, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")     # to read the store here, as tracking.py does
    from mlflow.tracking import MlflowClient
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    run = tmp_path / "runs" / "ml"
    p = _tinynet_cli("train", "--data", data, "--out", run, "--logger", "mlflow", *TINY_FLAGS, cwd=elsewhere)
    assert p.returncode == 0, p.stderr

    store = run.parent / "mlruns"                  # beside the run, not in the working directory
    assert store.is_dir() and not (elsewhere / "mlruns").exists()
    client = MlflowClient(store.as_uri())
    (mr,) = client.search_runs([client.get_experiment_by_name("pixelseg").experiment_id])
    assert mr.info.status == "FINISHED" and mr.info.run_name == "ml"
    params = mr.data.params
    assert params["train.logger"] == "mlflow" and params["model.name"] == engine_tinynet.NAME
    assert params["train.epochs"] == "1" and params["data.root"] == str(data.resolve())
    (row,) = _history(run)
    hist = client.get_metric_history(mr.info.run_id, "val/mIoU")
    assert [(m.step, round(m.value, 5)) for m in hist] == [(int(row["step"]), float(row["val_mIoU"]))]
    names = set(mr.data.metrics)
    classes = RunFolder(run).info().classes.names
    assert any(f"iou/{c}" in names for c in classes), names          # per-class IoU (absent classes left out)
    assert all(n.removeprefix("iou/") in classes for n in names if n.startswith("iou/"))
    assert {"train/loss", "val/pixel_accuracy", "lr"} <= names
    report_pngs = sorted(p.name for p in (run / "report").glob("*.png"))
    assert report_pngs, "the report wrote no images"
    assert sorted(a.path.split("/")[-1] for a in client.list_artifacts(mr.info.run_id, "report")) == report_pngs
    arts = {a.path for a in client.list_artifacts(mr.info.run_id, "run")}
    assert {"run/model.safetensors", "run/model.json", "run/config.yaml", "run/metrics.csv"} <= arts
    assert "run/last.pt" not in arts


def test_train_logger_tensorboard_scalars_and_report_images(data, tmp_path, one_thread):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    with engine_tinynet.registered():
        run = pixelseg.train(data, out=str(tmp_path / "tb"), model=engine_tinynet.NAME, image_size=(32, 32),
                             batch_size=4, num_workers=0, threads=1, lr=0.01, epochs=2, logger="tensorboard",
                             quiet=True, report=True)
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    rows = _history(run)
    assert [(e.step, round(e.value, 5)) for e in acc.Scalars("val/mIoU")] == \
        [(int(r["step"]), float(r["val_mIoU"])) for r in rows]
    assert [e.step for e in acc.Scalars("train/step_loss")] == list(range(1, int(rows[-1]["step"]) + 1))
    assert [e.step for e in acc.Scalars("train/loss")] == [int(r["step"]) for r in rows]    # the epoch mean
    ious = [t for t in acc.Tags()["scalars"] if t.startswith("iou/")]
    assert ious and all(len(acc.Scalars(t)) == 2 for t in ious)
    images = {t.removeprefix("report/") for t in acc.Tags()["images"]}
    assert images == {p.stem for p in (run / "report").glob("*.png")} and images
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_unknown_logger_is_one_line(tmp_path, data):
    p = subprocess.run([sys.executable, "-m", "pixelseg", "train", "--data", str(data), "--logger", "neptune"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=_env())
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--logger: invalid choice: 'neptune'" in p.stderr and "mlflow" in p.stderr
