"""The run folder: the contract between training and everything after it.

    RUN/config.yaml       the resolved configuration (every automatic choice filled in)
    RUN/classes.json      names, colors, ignore index
    RUN/model.json        what load/predict/evaluate/export read: architecture, preprocessing, classes
    RUN/model.safetensors the best weights (by val mIoU)
    RUN/last.pt           resumable state (tensors and plain values only; read with weights_only=True)
    RUN/metrics.csv       one row per validation
    RUN/metrics.json      the final evaluation of the best weights
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pixelseg.data.classes import ClassTable
from pixelseg.errors import PixelsegError
from pixelseg.fileio import write_json

RUN_FORMAT = "pixelseg-run/1"


@dataclass(frozen=True)
class Preprocessing:
    image_size: tuple[int, int]          # (H, W) the network sees; inputs are resized to it and logits back
    mean: tuple[float, ...]              # per channel, 0..255 scale
    std: tuple[float, ...]
    in_channels: int
    resize: str = "stretch"              # how an input is brought to image_size

    def to_dict(self) -> dict:
        return {"image_size": list(self.image_size), "mean": list(self.mean), "std": list(self.std),
                "in_channels": self.in_channels, "resize": self.resize}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(tuple(d["image_size"]), tuple(d["mean"]), tuple(d["std"]), int(d["in_channels"]), d.get("resize", "stretch"))


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

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"

    def to_dict(self) -> dict:
        model = {"name": self.model, "encoder": self.encoder, "num_classes": self.classes.num_classes,
                 "in_channels": self.preprocessing.in_channels}
        if self.sigmoid_threshold is not None:
            model["sigmoid_threshold"] = self.sigmoid_threshold
        return {"format": RUN_FORMAT, "model": model,
                "preprocessing": self.preprocessing.to_dict(), "classes": self.classes.to_dict(), "best": self.best}


def write_run_info(info: RunInfo) -> None:
    from pixelseg import __version__
    d = info.to_dict()
    d["pixelseg_version"] = __version__
    write_json(info.path / "model.json", d)


def is_run(path: str | Path) -> bool:
    return (Path(path) / "model.json").is_file()


def read_run(path: str | Path, need_weights: bool = True) -> RunInfo:
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
                       d.get("best") or {}, d["model"].get("sigmoid_threshold"))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise PixelsegError(f"{mj}: damaged run description ({type(e).__name__}: {e}); retrain or restore the file") from None
    if need_weights and not info.weights.is_file():
        raise PixelsegError(f"{info.weights}: weights missing; the run did not finish an epoch — resume it with "
                            f"`pixelseg train --out {path} --resume`")
    return info


def load_model(info: RunInfo, device="cpu"):
    """Build the run's architecture and load its best weights (safetensors: no pickle)."""
    from safetensors.torch import load_file

    from pixelseg.models import build_model

    binary = info.sigmoid_threshold is not None
    model = build_model(info.model, 1 if binary else info.classes.num_classes, info.preprocessing.in_channels, info.encoder)
    try:
        state = load_file(str(info.weights), device=str(device))
    except Exception as e:
        raise PixelsegError(f"{info.weights}: cannot read weights ({str(e).splitlines()[0][:160]}); the file is damaged — retrain or restore it") from None
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong_shape = [k for k in state if k in target and state[k].shape != target[k].shape]
    if missing or unexpected or wrong_shape:
        raise PixelsegError(f"{info.weights}: weights do not fit {info.model} ({len(missing)} missing, {len(unexpected)} unexpected, "
                            f"{len(wrong_shape)} wrong-shape keys); model.json and the weights come from different runs")
    model.load_state_dict(state)
    if binary:   # seen as 2-class logits, so every consumer (predict, TTA, tiles, export, serve) stays one path
        from pixelseg.metrics import TwoClassLogits
        model = TwoClassLogits(model, info.sigmoid_threshold)
    return model.to(device).eval()
