"""The run folder: the contract between training and everything after it.

    RUN/config.yaml       the resolved configuration (every automatic choice filled in)
    RUN/classes.json      names, colors, ignore index
    RUN/model.json        what load/predict/evaluate/export read: architecture, preprocessing, classes
    RUN/model.safetensors the best weights (by val mIoU)
    RUN/last.pt           resumable state (tensors and plain values only; read with weights_only=True)
    RUN/metrics.csv       one row per validation
    RUN/metrics.json      the final evaluation of the best weights
    RUN/recipe.json       what `train` chose and why, the hardware, the class pixel counts
    RUN/environment.json  one entry per training session (versions, host, command line)
    RUN/report/           the HTML report and its images

`RunFolder` is the one place that knows these names: everything else asks it for a file's content
(or, to show the user, its path). Paths stored in the run (the data root) are kept resolved, so a run
works from any working directory.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from pixelseg.data.classes import ClassTable
from pixelseg.errors import PixelsegError
from pixelseg.run.checkpoints import load_state, save_state, save_weights
from pixelseg.fileio import write_json, write_text
from pixelseg.run.check import description_problem

RUN_FORMAT = "pixelseg-run/1"


@dataclass(frozen=True)
class Preprocessing:
    image_size: tuple[int, int]          # (H, W) the network sees ("stretch"); the training crop ("scale")
    mean: tuple[float, ...]              # per channel, 0..255 scale
    std: tuple[float, ...]
    in_channels: int
    resize: str = "stretch"              # "stretch" to image_size, or "scale": by `scale`, whole or by windows
    scale: float | None = None           # of image_size (data/preprocess.py); old runs stay "stretch"
    # "stretch": the median (H, W) of the training images before the resize; an input far from it is warned
    # about, and windows (tile) run at the training scale image_size / source_size. None: not recorded
    source_size: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        d = {"image_size": list(self.image_size), "mean": list(self.mean), "std": list(self.std),
             "in_channels": self.in_channels, "resize": self.resize}
        if self.source_size is not None:
            d["source_size"] = list(self.source_size)
        return d | ({"scale": self.scale, "crop": list(self.image_size)} if self.resize == "scale" else {})

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        resize = d.get("resize", "stretch")
        scale = float(d["scale"]) if resize == "scale" else None
        source = d.get("source_size")
        return cls(tuple(d["crop" if scale else "image_size"]), tuple(d["mean"]), tuple(d["std"]),
                   int(d["in_channels"]), resize, scale, tuple(int(v) for v in source) if source else None)

    @property
    def stretch_scale(self) -> float | None:
        """A "stretch" run's training scale: how much its training images were shrunk (< 1) or enlarged (> 1)
        on the way into the network (geometric mean of the two axes); None when not recorded or unknown."""
        if self.resize != "stretch" or not self.source_size:
            return None
        (h, w), (sh, sw) = self.image_size, self.source_size
        return ((h / sh) * (w / sw)) ** 0.5


@dataclass(frozen=True)
class RunInfo:
    path: Path
    model: str
    encoder: str | None
    classes: ClassTable
    preprocessing: Preprocessing
    best: dict
    # a binary model with one sigmoid channel (data.binary_sigmoid): the probability above which a pixel is
    # foreground; None for the usual one-channel-per-class model
    sigmoid_threshold: float | None = None
    # `pixelseg calibrate`: every probability consumer divides the logits by it (labels unchanged); 1 = none
    temperature: float = 1.0
    # where the encoder's starting weights came from (source, package/file, version, sha256, licence); None: random
    pretrained: dict | None = None

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"

    def load_model(self, device="cpu"):
        """Build the run's architecture and load its best weights (safetensors: no pickle)."""
        from safetensors.torch import load_file

        from pixelseg.models import build_model

        binary = self.sigmoid_threshold is not None
        try:
            model = build_model(self.model, 1 if binary else self.classes.num_classes, self.preprocessing.in_channels, self.encoder)
        except PixelsegError as e:     # an unknown name read from the file: say which file
            raise PixelsegError(f"{self.path / 'model.json'}: {e}") from None
        try:
            state = load_file(str(self.weights), device=str(device))
        except Exception as e:
            raise PixelsegError(f"{self.weights}: cannot read weights ({str(e).splitlines()[0][:160]}); the file is damaged — retrain or restore it") from None
        target = model.state_dict()
        missing = [k for k in target if k not in state]
        unexpected = [k for k in state if k not in target]
        wrong_shape = [k for k in state if k in target and state[k].shape != target[k].shape]
        if missing or unexpected or wrong_shape:
            raise PixelsegError(f"{self.weights}: weights do not fit {self.model} ({len(missing)} missing, {len(unexpected)} unexpected, "
                                f"{len(wrong_shape)} wrong-shape keys); model.json and the weights come from different runs")
        model.load_state_dict(state)
        if binary:   # seen as 2-class logits, so every consumer (predict, TTA, tiles, export, serve) stays one path
            from pixelseg.models.outputs import TwoClassLogits
            model = TwoClassLogits(model, self.sigmoid_threshold)
        return model.to(device).eval()

    def to_dict(self) -> dict:
        model = {"name": self.model, "encoder": self.encoder, "num_classes": self.classes.num_classes,
                 "in_channels": self.preprocessing.in_channels}
        if self.sigmoid_threshold is not None:
            model["sigmoid_threshold"] = self.sigmoid_threshold
        if self.temperature != 1.0:
            model["temperature"] = self.temperature
        if self.pretrained is not None:
            model["pretrained"] = self.pretrained
        return {"format": RUN_FORMAT, "model": model,
                "preprocessing": self.preprocessing.to_dict(), "classes": self.classes.to_dict(), "best": self.best}


def _write_run_info(info: RunInfo) -> None:
    from pixelseg import __version__
    d = info.to_dict()
    d["pixelseg_version"] = __version__
    write_json(info.path / "model.json", d)


# the temperatures a run may hold: the range measure.calibration.fit_temperature fits in (T_MIN, T_MAX)
TEMPERATURE_RANGE = (0.05, 20.0)


def _temperature(t) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise ValueError(f"model.temperature {t!r} is not a number")
    return float(t)


def _read_run(path: str | Path, need_weights: bool = True) -> RunInfo:
    path = Path(path)
    mj = path / "model.json"
    if not path.exists():
        raise PixelsegError(f"{path}: run folder not found; give the folder `pixelseg train` wrote (it holds model.json)")
    if not mj.is_file():
        raise PixelsegError(f"{path}: not a pixelseg run folder (no model.json); give the folder `pixelseg train --out` wrote")
    try:
        d = json.loads(mj.read_text(encoding="utf-8"))
        if d.get("format") != RUN_FORMAT:
            raise PixelsegError(f"{mj}: run format {d.get('format')!r} is not {RUN_FORMAT!r}; retrain or upgrade pixelseg")
        info = RunInfo(path, d["model"]["name"], d["model"].get("encoder"),
                       ClassTable.from_dict(d["classes"], str(mj)), Preprocessing.from_dict(d["preprocessing"]),
                       d.get("best") or {}, d["model"].get("sigmoid_threshold"),
                       _temperature(d["model"].get("temperature", 1.0)), d["model"].get("pretrained"))
        if info.pretrained is not None and not isinstance(info.pretrained, dict):
            raise ValueError(f"model.pretrained is {type(info.pretrained).__name__}, not an object")
        lo, hi = TEMPERATURE_RANGE
        if not lo <= info.temperature <= hi:     # NaN, inf, 0, negative, 1e-300 (logits / T overflows), 1e300
            raise ValueError(f"model.temperature {info.temperature:g} is outside {lo:g}..{hi:g} (the range "
                             f"`pixelseg calibrate` fits in); run calibrate again or delete the key")
        problem = description_problem(info.preprocessing, d["model"], info.classes.num_classes)
        if problem:
            raise ValueError(problem)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise PixelsegError(f"{mj}: damaged run description ({type(e).__name__}: {e}); retrain or restore the file") from None
    if need_weights and not info.weights.is_file():
        raise PixelsegError(f"{info.weights}: weights missing; the run did not finish an epoch — resume it with "
                            f"`pixelseg train --out {path} --resume`")
    return info


def pick_device(device: str = "auto"):
    """The torch.device for --device: auto is CUDA where a GPU is visible, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PixelsegError(f"device '{device}' asked for, but no CUDA GPU is visible; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise PixelsegError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:N") from None


class RunFolder:
    """Every file of a run folder, read and written in one place (atomic writes throughout).

    Readers of optional files return an empty value when the file is absent ({} / [] / None) and raise a
    one-line PixelsegError naming the file when it is there but damaged.

    What a run folder holds (TENANTS), and who writes it:
      training        config.yaml, classes.json, model.json, model.safetensors, last.pt (resume state),
                      metrics.csv, metrics.json, recipe.json, environment.json
      report          report/ (report.html and its PNGs; `pixelseg report`, evaluate, train)
      export          export/ (the default place of `pixelseg export` files)
      audit, suggest  audit/ and suggest/ (their default out folders)
      trackers        tensorboard/ and wandb/ (--logger); MLflow's local store is RUN/../mlruns, beside the run
      calibrate       rewrites model.json (temperature), tune-threshold likewise (threshold)
    Nothing else writes into a run: predict and serve only read it (the ONNX graph the fast backends need is
    cached in the user's cache, fileio.user_cache).
    """

    CONFIG, CLASSES, MODEL, WEIGHTS, STATE = "config.yaml", "classes.json", "model.json", "model.safetensors", "last.pt"
    HISTORY, METRICS, RECIPE, ENVIRONMENT, REPORT = "metrics.csv", "metrics.json", "recipe.json", "environment.json", "report"
    EXPORT, AUDIT, SUGGEST, TENSORBOARD, WANDB = "export", "audit", "suggest", "tensorboard", "wandb"
    TENANTS = (CONFIG, CLASSES, MODEL, WEIGHTS, STATE, HISTORY, METRICS, RECIPE, ENVIRONMENT, REPORT, EXPORT, AUDIT,
               SUGGEST, TENSORBOARD, WANDB)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- paths, for messages and for tools that must hand a path on (safetensors, tensorboard) --------------
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def model_json(self) -> Path:
        return self.path / self.MODEL

    @property
    def weights(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def state_path(self) -> Path:
        return self.path / self.STATE

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def history_path(self) -> Path:
        return self.path / self.HISTORY

    @property
    def report_dir(self) -> Path:
        return self.path / self.REPORT

    @property
    def report_html(self) -> Path:
        return self.report_dir / "report.html"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def wandb_dir(self) -> Path:
        return self.path / self.WANDB

    @property
    def export_dir(self) -> Path:
        return self.path / self.EXPORT

    @property
    def audit_dir(self) -> Path:
        return self.path / self.AUDIT

    @property
    def suggest_dir(self) -> Path:
        return self.path / self.SUGGEST

    # -- what is there -----------------------------------------------------------------------------------
    def is_run(self) -> bool:
        """A finished or running run: model.json is written before the first step."""
        return (self.path / self.MODEL).is_file()

    def has_state(self) -> bool:
        return self.state_path.is_file()

    def has_weights(self) -> bool:
        return self.weights.is_file()

    # -- model.json, weights, resumable state --------------------------------------------------------------
    def info(self, need_weights: bool = True) -> RunInfo:
        return _read_run(self.path, need_weights)

    def write_info(self, info: RunInfo) -> None:
        _write_run_info(info)

    def load_model(self, device="cpu"):
        return self.info().load_model(device)

    def save_weights(self, model) -> None:
        save_weights(self.weights, model)

    def save_state(self, blob: dict) -> None:
        """last.pt; a failed write (disk full) is a one-line error and the previous last.pt stays intact."""
        try:
            save_state(self.state_path, blob)
        except OSError as e:
            raise PixelsegError(f"{self.state_path}: cannot save the training state ({e.strerror or e}); the previous "
                                "last.pt is intact — free space, then continue with --resume") from None

    def load_state(self) -> dict:
        return load_state(self.state_path)

    # -- a folder to train into ------------------------------------------------------------------------------
    def prepare(self, resume: bool) -> None:
        """Before any data is read: the folder exists and is writable, a new run does not overwrite an old one,
        and a resumed folder is rid of the temporary files a killed save left behind."""
        if resume:
            if not self.config_path.is_file() and not self.has_state():
                raise PixelsegError(f"{self.path}: nothing to resume (no config.yaml, no last.pt); start it without --resume")
        elif self.path.exists() and any(self.path.iterdir()):
            raise PixelsegError(f"{self.path}: already holds files; pass --resume to continue that run or choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".pixelseg-write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise PixelsegError(f"{self.path}: cannot write the run folder ({e.strerror or e}); choose a writable --out") from None
        # atomic_path writes ".<stem>.<random>.tmp<suffix>"; after a kill -9 in the middle of a save one
        # can remain. The complete file it was replacing is still in place, so the leftover is garbage.
        for leftover in self.path.glob(".*.tmp*"):
            leftover.unlink(missing_ok=True)

    def check_space(self, need_bytes: int) -> None:
        free = shutil.disk_usage(self.path).free
        if free < need_bytes:
            raise PixelsegError(f"{self.path}: only {free / 2**20:.0f} MiB free, the checkpoints need about "
                                f"{need_bytes / 2**20:.0f} MiB; free some space or choose another --out")

    # -- config.yaml ---------------------------------------------------------------------------------------
    def write_config(self, cfg) -> None:
        from pixelseg.config import dump_config
        write_text(self.config_path, dump_config(cfg))

    def config(self, overrides: dict | None = None):
        """The saved Config, validated (for resume and reproduction); a one-line error when it is missing."""
        from pixelseg.config import load_config
        if not self.config_path.is_file():
            raise PixelsegError(f"{self.config_path}: not found; {self.path} is not a run that can be resumed")
        return load_config(self.config_path, overrides)

    def config_dict(self) -> dict:
        """config.yaml as plain data ({} when absent): readers that must open runs of older or newer
        versions (report, export) look keys up without validating them."""
        import yaml
        p = self.config_path
        if not p.is_file():
            return {}
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise PixelsegError(f"{p}: not valid YAML ({str(e).splitlines()[0]}); restore the file") from None
        if not isinstance(d, dict):
            raise PixelsegError(f"{p}: expected a mapping of sections (data, model, loss, train); restore the file")
        return d

    def data_settings(self) -> dict:
        """data.root / format / val_fraction / ... from config.yaml ({} when there is none)."""
        return dict(self.config_dict().get("data") or {})

    def data_root(self) -> Path | None:
        """The dataset the run was trained on, resolved against the run folder's own location when it was
        stored relative (runs written before roots were stored resolved); None when it is not there."""
        root = self.data_settings().get("root")
        if not root:
            return None
        for cand in (Path(root), self.path / root, self.path.parent / root):
            if cand.is_dir():
                return cand.resolve()
        return None

    def require_data_root(self) -> Path:
        """data_root() for commands given no --data: a one-line error with the fix when it is gone."""
        root = self.data_root()
        if root is None:
            named = self.data_settings().get("root")
            raise PixelsegError(f"{self.path}: the dataset it was trained on ({named or f'not named in {self.config_path}'}) "
                                "is not there; pass --data ROOT")
        return root

    # -- classes.json, recipe.json, environment.json -------------------------------------------------------
    def write_classes(self, classes: ClassTable) -> None:
        write_json(self.path / self.CLASSES, classes.to_dict())

    def write_recipe(self, recipe: dict) -> None:
        write_json(self.path / self.RECIPE, recipe)

    def recipe(self) -> dict:
        return self.read_json(self.path / self.RECIPE) or {}

    def record_environment(self, env: dict) -> None:
        """environment.json: one entry per session (the first run and each resume), newest last."""
        sessions = []
        p = self.path / self.ENVIRONMENT
        if p.is_file():
            with contextlib.suppress(ValueError, OSError):
                sessions = json.loads(p.read_text(encoding="utf-8")).get("sessions", [])
        write_json(p, {"sessions": sessions + [env]})

    def environment(self) -> list[dict]:
        return (self.read_json(self.path / self.ENVIRONMENT) or {}).get("sessions", [])

    # -- metrics.csv (one row per validation) and metrics.json (the final evaluation) ----------------------
    def write_history(self, rows: list[dict]) -> None:
        if not rows:
            return
        fields = list(dict.fromkeys(k for row in rows for k in row))   # rows from older versions may lack a column
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
        write_text(self.history_path, buf.getvalue())

    def history(self) -> list[dict]:
        p = self.history_path
        if not p.is_file():
            return []
        with p.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def write_metrics(self, summary: dict) -> None:
        write_json(self.metrics_path, summary)

    def metrics(self) -> dict | None:
        return self.read_json(self.metrics_path)

    @staticmethod
    def read_json(path: Path):
        """A JSON file of a run (None when absent; a one-line error when damaged)."""
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PixelsegError(f"{path}: not valid JSON ({e}); restore the file or retrain") from None
