"""pixelseg.engine.tracking: what each tracker logged, read back through the tracker's own reader."""
from __future__ import annotations

import glob
import struct
import time

import numpy as np
import pytest
from PIL import Image

from pixelseg.engine import tracking
from pixelseg.errors import PixelsegError

CONFIG = {"data": {"root": "/data/roads", "image_size": [64, 64]}, "model": {"name": "lraspp", "encoder": None},
          "train": {"lr": 0.01, "epochs": 2}}
ROWS = [  # as the trainer writes metrics.csv rows, plus iou/<class>
    {"epoch": 1, "step": 10, "elapsed_s": 3.2, "lr": "0.01", "train_loss": 0.9, "val_mIoU": 0.4,
     "val_pixel_accuracy": 0.8, "val_mean_dice": "", "iou/road": 0.5, "iou/traffic light": 0.3},
    {"epoch": 2, "step": 20, "elapsed_s": 6.1, "lr": "0.005", "train_loss": 0.7, "val_mIoU": 0.55,
     "val_pixel_accuracy": 0.85, "val_mean_dice": 0.6, "iou/road": 0.7, "iou/traffic light": 0.4},
]


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "runs" / "exp1"
    (run / "report").mkdir(parents=True)
    Image.fromarray(np.full((12, 16, 3), (200, 30, 40), np.uint8)).save(run / "report" / "curves.png")
    (run / "model.json").write_text('{"format": "pixelseg-run/1"}')
    (run / "model.safetensors").write_bytes(b"weights")
    (run / "last.pt").write_bytes(b"resumable state: not part of the artifact")
    return run


def _log_all(tracker, run_dir):
    for step in (5, 10):
        tracker.log_step(step, 1.0 / step, 0.01)
    for row in ROWS:
        tracker.log_epoch(row["step"], row)
    tracker.log_images({"curves": run_dir / "report" / "curves.png"})
    tracker.log_run_folder(run_dir)
    tracker.close()


def test_helpers():
    assert tracking.flatten(CONFIG)["data.image_size"] == "[64, 64]"
    assert tracking.flatten(CONFIG)["train.lr"] == 0.01
    got = tracking.numeric(ROWS[0])
    assert got["train/loss"] == 0.9 and got["val/mIoU"] == 0.4 and got["lr"] == 0.01
    assert "val/mean_dice" not in got            # '' before a validation is not a metric
    summary = {"per_class": {"road": {"iou": 0.5}, "car": {"iou": None}}}
    assert tracking.per_class_iou(summary) == {"iou/road": 0.5}


def test_mlflow_local_store_read_back(run_dir, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _log_all(tracking.open_tracker("mlflow", run_dir, CONFIG), run_dir)

    store = run_dir.parent / "mlruns"
    assert store.is_dir()
    client = MlflowClient(store.as_uri())
    exp = client.get_experiment_by_name("pixelseg")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "exp1"
    assert run.data.params["train.lr"] == "0.01" and run.data.params["model.name"] == "lraspp"
    hist = client.get_metric_history(run.info.run_id, "val/mIoU")
    assert [(m.step, m.value) for m in hist] == [(10, 0.4), (20, 0.55)]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "iou/traffic light")] == [0.3, 0.4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/mean_dice")] == [20]
    assert client.get_metric_history(run.info.run_id, "train/step_loss") == []     # per step: TensorBoard only
    assert [a.path for a in client.list_artifacts(run.info.run_id, "report")] == ["report/curves.png"]
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "run")}
    assert arts == {"run/model.json", "run/model.safetensors", "run/report"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "run/report")] == ["run/report/curves.png"]

    # a resumed training continues the same MLflow run; a changed budget does not fail on the old param
    again = tracking.open_tracker("mlflow", run_dir, {**CONFIG, "train": {"lr": 0.01, "epochs": 4}})
    again.log_epoch(30, {"val_mIoU": 0.6})
    again.close()
    (run2,) = client.search_runs([exp.experiment_id])
    assert run2.info.run_id == run.info.run_id
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val/mIoU")] == [0.4, 0.55, 0.6]


def test_finish_run_adds_the_report_to_the_training_run(run_dir, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from pixelseg.run.folder import RunFolder
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    RunFolder(run_dir).write_history(ROWS)
    t = tracking.open_tracker("mlflow", run_dir, CONFIG)
    t.log_epoch(20, ROWS[1])
    t.close()
    tracking.finish_run("mlflow", run_dir)          # as api.train would, after build_report
    client = MlflowClient((run_dir.parent / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("pixelseg").experiment_id])
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "report")] == ["report/curves.png"]
    assert "run/metrics.csv" in {a.path for a in client.list_artifacts(run.info.run_id, "run")}

    tracking.finish_run("tensorboard", run_dir)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    assert [i.step for i in acc.Images("report/curves")] == [20]       # the last step of metrics.csv


def test_mlflow_honours_tracking_uri(run_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    elsewhere = tmp_path / "team_store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    t = tracking.open_tracker("mlflow", run_dir, CONFIG)
    t.close()
    assert elsewhere.is_dir() and not (run_dir.parent / "mlruns").exists()


def _wandb_records(path):
    """Records of a .wandb file: a LevelDB-style log (32 KiB blocks, 7-byte chunk headers) after a 7-byte
    W&B header; wandb 0.31 has no Python reader of its own any more."""
    from wandb.proto import wandb_internal_pb2 as pb
    raw = open(path, "rb").read()
    assert raw[:4] == b":W&B"
    pos, buf, out = 7, b"", []
    while pos + 7 <= len(raw):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        pos += 7
        if n == 0 and kind == 0:       # block padding
            pos += left - 7
            continue
        buf += raw[pos:pos + n]
        pos += n
        if kind in (1, 4):             # FULL or LAST chunk
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


@pytest.mark.slow
def test_wandb_offline_history(run_dir, monkeypatch):
    pytest.importorskip("wandb")
    for k in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    _log_all(tracking.open_tracker("wandb", run_dir, CONFIG), run_dir)

    (f,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    # run.finish() can return before wandb's service process has written the file (seen 1 in 4 times)
    deadline = time.time() + 30
    records = _wandb_records(f)
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        assert time.time() < deadline, "the .wandb file has no exit record after 30 s"
        time.sleep(0.2)
        records = _wandb_records(f)
    history = [{i.key or "/".join(i.nested_key): i.value_json for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert [(h["_step"], float(h["val/mIoU"])) for h in history] == [("10", 0.4), ("20", 0.55)]
    assert float(history[1]["iou/traffic light"]) == 0.4
    assert history[1]["report/curves/_type"] == '"image-file"'          # the report image, at the last step
    config = {}
    for r in records:
        if r.WhichOneof("record_type") in ("run", "config"):
            cfg = r.run.config if r.WhichOneof("record_type") == "run" else r.config
            config.update({u.key: u.value_json for u in cfg.update})
    assert config["train.lr"] == "0.01" and config["model.name"] == '"lraspp"'
    (art,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert art.type == "pixelseg-run"
    assert sorted(e.path for e in art.manifest.contents) == ["model.json", "model.safetensors", "report/curves.png"]


def test_tensorboard_scalars_and_image(run_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    _log_all(tracking.open_tracker("tensorboard", run_dir, CONFIG), run_dir)
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    assert [(e.step, round(e.value, 5)) for e in acc.Scalars("val/mIoU")] == [(10, 0.4), (20, 0.55)]
    assert [round(e.value, 5) for e in acc.Scalars("iou/road")] == [0.5, 0.7]
    assert [e.step for e in acc.Scalars("train/loss")] == [10, 20]
    assert [(e.step, round(e.value, 5)) for e in acc.Scalars("train/step_loss")] == [(5, 0.2), (10, 0.1)]
    (img,) = acc.Images("report/curves")
    assert (img.width, img.height, img.step) == (16, 12, 20)
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_csv_is_a_no_op(run_dir):
    t = tracking.open_tracker("csv", run_dir, CONFIG)
    _log_all(t, run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["last.pt", "model.json", "model.safetensors", "report"]


@pytest.mark.parametrize("kind,extra", [("mlflow", "mlflow"), ("wandb", "wandb"), ("tensorboard", "logging")])
def test_missing_package_names_the_extra(kind, extra, monkeypatch):
    import builtins
    real = builtins.__import__

    def blocked(name, *a, **k):
        if name.split(".")[0] == kind:
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", blocked)
    with pytest.raises(PixelsegError, match=rf"--logger {kind} needs the {kind} package: pip install 'pixelseg\[{extra}\]'"):
        tracking.require(kind)
    with pytest.raises(PixelsegError, match="unknown logger 'neptune'; choose one of csv, tensorboard, mlflow, wandb"):
        tracking.require("neptune")
