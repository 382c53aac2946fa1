"""The trackers and the Hub as a user meets them: `pixelseg train --logger ...`, `pixelseg push`, `pixelseg pull`,
`pixelseg predict hf://...`, in subprocesses started from another working directory (tests/helpers/hub_fake.py
stands in for the Hub: the real huggingface_hub client code path, no network)."""
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
from pixelseg.data.tools.synth import generate
from pixelseg.run.folder import RunFolder

from tests.helpers import tinynet

TINY_FLAGS = ["--model", tinynet.NAME, "--image-size", "32", "--batch-size", "4", "--num-workers", "0",
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
    """The pixelseg CLI with the tiny test net registered (tests/helpers/tinynet.py)."""
    return subprocess.run([sys.executable, tinynet.__file__, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env or _env())


def _history(run: Path) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
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
    assert params["train.logger"] == "mlflow" and params["model.name"] == tinynet.NAME
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


@pytest.mark.slow
def test_train_logger_tensorboard_scalars_and_report_images(data, tmp_path, one_thread):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    with tinynet.registered():
        run = pixelseg.train(data, out=str(tmp_path / "tb"), model=tinynet.NAME, image_size=(32, 32),
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


# -- the Hub ---------------------------------------------------------------------------------------------------
@pytest.fixture
def hub_run(tmp_path, one_thread) -> Path:
    """A small run folder of a registered model (lraspp): a `pixelseg` subprocess can load it."""
    import torch

    from pixelseg.data.classes import ClassTable
    from pixelseg.models import build_model
    from pixelseg.run.folder import Preprocessing, RunInfo
    pytest.importorskip("huggingface_hub")
    run = tmp_path / "runs" / "exp1"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    classes = ClassTable(("background", "road", "car"), ((0, 0, 0), (128, 64, 128), (0, 0, 142)))
    rf = RunFolder(run)
    rf.write_info(RunInfo(run, "lraspp", None, classes, Preprocessing((64, 64), (123.7, 116.3, 103.5),
                                                                     (58.4, 57.1, 57.4), 3), {"epoch": 1, "mIoU": 0.5}))
    rf.save_weights(build_model("lraspp", 3, 3, None).eval())
    rf.write_classes(classes)
    rf.write_metrics({"mIoU": 0.5, "pixel_accuracy": 0.8, "split": "val", "images": 4, "per_class": {}})
    (run / "last.pt").write_bytes(b"never uploaded")
    return run


def _hub_env(tmp_path, fake, **extra) -> dict:
    # HF_HOME: no token or cache of the user's; no Xet storage in the fake (the client uses plain LFS)
    return _env(HF_ENDPOINT=fake.endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1",
                HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", **extra)


def _cli(*args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixelseg", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def _image(tmp_path) -> Path:
    path = tmp_path / "img" / "street.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_push_pull_and_load_from_the_hub_in_subprocesses(hub_run, tmp_path):
    from tests.helpers.hub_fake import FakeHub
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    image = _image(tmp_path)
    with FakeHub(token="hf_write") as fake:
        env = _hub_env(tmp_path, fake)
        p = _cli("push", hub_run, "me/road-seg", "--token", "hf_write", "--private", cwd=elsewhere, env=env)
        assert p.returncode == 0, p.stderr
        assert fake.repos["me/road-seg"].private
        assert f"-> {fake.endpoint}/me/road-seg" in p.stdout
        assert sorted(fake.repos["me/road-seg"].files) == sorted(
            ["model.safetensors", "model.json", "classes.json", "metrics.json", "README.md"])

        # without the token a private repo is not found (401): one line: one line naming the fix
        p = _cli("pull", "me/road-seg", cwd=elsewhere, env=env)
        assert p.returncode == 2 and "Traceback" not in p.stderr and "--token" in p.stderr, p.stderr

        env["HF_TOKEN"] = "hf_write"
        p = _cli("pull", "hf://me/road-seg", "--out", "pulled", cwd=elsewhere, env=env)
        assert p.returncode == 0, p.stderr
        pulled = elsewhere / "pulled"
        assert sorted(f.name for f in pulled.iterdir()) == sorted(fake.repos["me/road-seg"].files)
        assert not any(f.is_symlink() for f in pulled.iterdir())     # plain files, not links into the cache
        p = _cli("pull", "me/road-seg", "--out", "pulled", cwd=elsewhere, env=env)
        assert p.returncode == 2 and "not empty" in p.stderr

        # pixelseg.load("hf://...") in a fresh interpreter: the same labels as the local run
        code = ("import sys, numpy as np, pixelseg; from PIL import Image; im = np.asarray(Image.open(sys.argv[2]));"
                "np.save(sys.argv[3], pixelseg.load(sys.argv[1], device='cpu', backend='torch').predict(im))")
        p = subprocess.run([sys.executable, "-c", code, "hf://me/road-seg", str(image), str(tmp_path / "remote.npy")],
                           capture_output=True, text=True, timeout=300, cwd=elsewhere, env=env)
        assert p.returncode == 0, p.stderr
    local = pixelseg.load(hub_run, device="cpu", backend="torch").predict(str(image))
    np.testing.assert_array_equal(np.load(tmp_path / "remote.npy"), local)
    np.testing.assert_array_equal(pixelseg.load(pulled, device="cpu", backend="torch").predict(str(image)), local)


@pytest.mark.slow
def test_predict_cli_from_the_hub_equals_local(hub_run, tmp_path):
    from tests.helpers.hub_fake import FakeHub
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    image = _image(tmp_path)
    with FakeHub() as fake:
        env = _hub_env(tmp_path, fake)
        assert _cli("push", hub_run, "me/road-seg", cwd=elsewhere, env=env).returncode == 0
        for source, out in ((hub_run, "local"), ("hf://me/road-seg", "remote"), ("me/road-seg", "bare")):
            p = _cli("predict", source, image, "--out", out, "--backend", "torch", "--device", "cpu",
                     cwd=elsewhere, env=env)
            assert p.returncode == 0, p.stderr
    local = np.asarray(Image.open(elsewhere / "local" / "street.png"))
    for out in ("remote", "bare"):
        np.testing.assert_array_equal(np.asarray(Image.open(elsewhere / out / "street.png")), local)
