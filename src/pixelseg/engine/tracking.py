"""Experiment trackers: one small interface the trainer calls, whatever the user picked with --logger.

    tracker = open_tracker(cfg.train.logger, run_dir, config_dict)   # logs the config as params
    tracker.log_step(step, loss, lr)                                 # every step (TensorBoard keeps it)
    tracker.log_epoch(step, {**row, **per_class_iou(summary)})       # metrics.csv's row + iou/<class>
    tracker.close()
    finish_run(cfg.train.logger, run_dir)     # after the report: its images + the run folder as an artifact

kinds:
  csv          nothing more: metrics.csv is written anyway
  tensorboard  RUN/tensorboard: scalars, the report images, the config as text
  mlflow       MLFLOW_TRACKING_URI when set, else a local file store beside the run (RUN/../mlruns; view it
               with `MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri RUN/../mlruns`, or move it
               to MLflow's database store with `mlflow migrate-filestore`); experiment "pixelseg", one MLflow run per
               run folder (a resumed run continues its MLflow run). Offline: nothing leaves the machine.
  wandb        offline (WANDB_MODE overrides) under RUN/wandb; `wandb sync RUN/wandb/offline-run-*` uploads it

Metric names are the same everywhere: train/loss, val/mIoU, val/pixel_accuracy, ..., iou/<class>, lr.
A missing package is a one-line PixelsegError naming the pip extra, raised by `require` before training.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

from pixelseg.errors import PixelsegError
from pixelseg.run.folder import RunFolder

KINDS = ("csv", "tensorboard", "mlflow", "wandb")
_PACKAGES = {"tensorboard": ("tensorboard", "logging"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
# left out of the run-folder artifact: resumable optimizer state (3x the weights) and the trackers' own files
_ARTIFACT_SKIP = {RunFolder.STATE, RunFolder.TENSORBOARD, RunFolder.WANDB, "mlruns"}


def require(kind: str) -> None:
    """Fail in a second, before any data is read, when the tracker's package is missing."""
    if kind not in KINDS:
        raise PixelsegError(f"unknown logger {kind!r}; choose one of {', '.join(KINDS)}")
    if kind in _PACKAGES:
        module, extra = _PACKAGES[kind]
        try:
            __import__(module)
        except ImportError:
            raise PixelsegError(f"--logger {kind} needs the {module} package: pip install 'pixelseg[{extra}]'") from None


def flatten(config: dict, prefix: str = "") -> dict:
    """{'train': {'lr': 0.01}} -> {'train.lr': 0.01}; lists and None become strings trackers can store."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
    return out


def per_class_iou(summary: dict) -> dict:
    """iou/<class> from a metrics.summarize result (undefined IoUs, e.g. absent classes, are left out)."""
    return {f"iou/{name}": c["iou"] for name, c in (summary.get("per_class") or {}).items() if c.get("iou") is not None}


def metric_name(key: str) -> str:
    """metrics.csv's column names -> the trackers' (train_loss -> train/loss, val_mIoU -> val/mIoU)."""
    for split in ("train_", "val_"):
        if key.startswith(split):
            return key.replace("_", "/", 1)
    return key


def numeric(row: dict) -> dict:
    """The row's finite numbers (metrics.csv rows hold '' before the first validation and lr as text)."""
    out = {}
    for k, v in row.items():
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and not isinstance(v, bool):
            out[metric_name(k)] = x
    return out


class Tracker:
    """The 'csv' tracker and the base of the others: every method is a no-op."""

    kind = "csv"

    def log_params(self, params: dict) -> None:
        pass

    def log_step(self, step: int, loss: float, lr: float) -> None:
        """Every optimizer step (only TensorBoard keeps these: a file-store write per step would cost)."""

    def log_epoch(self, step: int, row: dict) -> None:
        pass

    def log_images(self, images: dict, step: int | None = None) -> None:
        """name -> PNG path; step: the training step they belong to (default: the last one logged)."""

    def log_run_folder(self, path: str | Path) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_tracker(kind: str, run_dir: str | Path, config: dict | None) -> Tracker:
    """The tracker for `kind`, started and holding `config` (nested, as config.yaml) as its params.
    Opening it again for the same run folder continues the same tracked run (MLflow, W&B)."""
    require(kind)
    run_dir = Path(run_dir)
    makers = {"csv": lambda _: Tracker(), "tensorboard": TensorBoardTracker, "mlflow": MlflowTracker,
              "wandb": WandbTracker}
    tracker = makers[kind](run_dir)
    if config is not None:
        tracker.log_params(flatten(config))
    return tracker


def finish_run(kind: str, run_dir: str | Path) -> None:
    """After training (and the report, when there is one): the report's images at the last step and the
    run folder as an artifact, in the run the training logged to."""
    if kind == "csv":
        return
    rf = RunFolder(run_dir)
    history = rf.history()
    step = int(float(history[-1]["step"])) if history and history[-1].get("step") else 0
    images = {p.stem: p for p in sorted(rf.report_dir.glob("*.png"))}
    with open_tracker(kind, run_dir, None) as tracker:
        if images:
            tracker.log_images(images, step)
        tracker.log_run_folder(run_dir)


def _artifact_files(path: Path):
    """(file, path relative to the run) for the run-folder artifact."""
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if p.is_file() and rel.parts[0] not in _ARTIFACT_SKIP and not p.name.startswith("."):
            yield p, rel


class TensorBoardTracker(Tracker):
    kind = "tensorboard"

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(RunFolder(run_dir).tensorboard_dir))
        self.step = 0

    def log_params(self, params: dict) -> None:
        # add_hparams opens a run folder of its own per call; a text table shows in the same run
        rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("config", f"| key | value |\n|---|---|\n{rows}", self.step)

    def log_step(self, step: int, loss: float, lr: float) -> None:
        # train/loss is the epoch mean (as in metrics.csv): the per-step value gets its own name
        self.writer.add_scalar("train/step_loss", loss, step)
        self.writer.add_scalar("lr", lr, step)

    def log_epoch(self, step: int, row: dict) -> None:
        self.step = step
        for k, v in numeric(row).items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def log_images(self, images: dict, step: int | None = None) -> None:
        import numpy as np
        from PIL import Image
        for name, path in images.items():
            with Image.open(path) as im:
                self.writer.add_image(f"report/{name}", np.asarray(im.convert("RGB")),
                                      self.step if step is None else step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


_MLFLOW_BAD = re.compile(r"[^\w\-. /:]")


class MlflowTracker(Tracker):
    kind = "mlflow"

    def __init__(self, run_dir: Path):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # MLflow 3 keeps the file store in maintenance mode behind this opt-in; a folder of files is
            # still what works offline with mlflow-skinny (no database driver) and opens in `mlflow ui`
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (run_dir.resolve().parent / "mlruns").as_uri()
        self.uri = uri
        try:
            self.client = MlflowClient(uri)
            exp = self.client.get_experiment_by_name("pixelseg")
            exp_id = exp.experiment_id if exp else self.client.create_experiment("pixelseg")
            tag = str(run_dir.resolve())
            found = self.client.search_runs([exp_id], filter_string=f"tags.`pixelseg.run_dir` = '{tag}'",
                                            max_results=1) if "'" not in tag else []
            if found:       # a resumed training continues its MLflow run
                self.run_id = found[0].info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
                self.known = dict(found[0].data.params)
            else:
                run = self.client.create_run(exp_id, run_name=run_dir.name, tags={"pixelseg.run_dir": tag})
                self.run_id, self.known = run.info.run_id, {}
        except Exception as e:
            raise PixelsegError(f"--logger mlflow: cannot open the tracking store {uri} "
                                f"({str(e).splitlines()[0][:160]}); check MLFLOW_TRACKING_URI") from None

    @staticmethod
    def _name(key: str) -> str:
        return _MLFLOW_BAD.sub("_", key)

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param
        # a param keeps its first value: a resume that extends --epochs must not fail on the changed value
        new = {self._name(k): str(v)[:6000] for k, v in params.items() if self._name(k) not in self.known}
        if new:
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in new.items()])
            self.known.update(new)

    def log_epoch(self, step: int, row: dict) -> None:
        import time

        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(self._name(k), v, now, int(step)) for k, v in numeric(row).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_images(self, images: dict, step: int | None = None) -> None:
        for name, path in images.items():
            self.client.log_artifact(self.run_id, str(path), "report")

    def log_run_folder(self, path: str | Path) -> None:
        path = Path(path)
        for f, rel in _artifact_files(path):
            parent = "/".join(("run",) + rel.parts[:-1])
            self.client.log_artifact(self.run_id, str(f), parent)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbTracker(Tracker):
    kind = "wandb"

    def __init__(self, run_dir: Path):
        import wandb
        self.wandb = wandb
        # one id per run folder: a resumed training appends to the same W&B run
        run_id = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "pixelseg"), name=run_dir.name, id=run_id,
                                  resume="allow", dir=str(run_dir), mode=os.environ.get("WANDB_MODE", "offline"),
                                  settings=wandb.Settings(silent=True, console="off"))
        except Exception as e:
            raise PixelsegError(f"--logger wandb: cannot start a run in {run_dir}/wandb "
                                f"({str(e).splitlines()[0][:160]})") from None
        self.step = 0

    def log_params(self, params: dict) -> None:
        # flat keys (train.lr), as in MLflow; allow_val_change: a resume may extend the budget
        self.run.config.update(params, allow_val_change=True)

    def log_epoch(self, step: int, row: dict) -> None:
        self.step = max(self.step, int(step))
        self.run.log(numeric(row), step=self.step)

    def log_images(self, images: dict, step: int | None = None) -> None:
        self.step = max(self.step, int(step or 0))
        self.run.log({f"report/{k}": self.wandb.Image(str(p)) for k, p in images.items()}, step=self.step)

    def log_run_folder(self, path: str | Path) -> None:
        path = Path(path)
        name = re.sub(r"[^\w.-]", "_", path.name)
        art = self.wandb.Artifact(f"run-{name}", type="pixelseg-run")
        for f, rel in _artifact_files(path):
            art.add_file(str(f), name=rel.as_posix())
        self.run.log_artifact(art)

    def close(self) -> None:
        self.run.finish()
