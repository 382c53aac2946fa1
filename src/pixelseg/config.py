"""Configuration: frozen dataclasses, one per concern, loaded from YAML and/or CLI flags.

Every field that says `None` means "let pixelseg choose" (see engine/recipe.py); the resolved
config, with every choice filled in, is written to the run folder as config.yaml so a run can be
reproduced with `pixelseg train --config RUN/config.yaml`. An unknown key is an error, never ignored.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pixelseg.errors import PixelsegError


# the dataset layouts data/formats.py reads and the augmentation presets of data/transforms.py (kept here as
# names only so that loading a config does not import the data stack; tests/data check they agree)
DATA_FORMATS = ("folder", "keras", "colormask", "voc", "cityscapes", "ade20k", "camvid", "camvid11", "coco", "labelme")
AUGMENT_PRESETS = ("none", "light", "default", "strong", "aerial", "medical")


@dataclass(frozen=True)
class DataConfig:
    root: str | None = None
    format: str = "auto"                      # auto | one of DATA_FORMATS (data/formats.py reads them)
    image_size: tuple[int, int] | None = None  # (H, W) the network sees; None = from the data and the hardware
    augment: str | None = None                # a preset of AUGMENT_PRESETS, or an albumentations pipeline file
                                              # (.yaml/.yml/.json, A.save format); None = by budget and hardware
    in_channels: int | None = None            # None = from the images (1 gray, 3 RGB, 4 RGBA)
    num_workers: int | None = None
    val_fraction: float = 0.1                 # held out from train when the data has no val split
    binary_sigmoid: bool = False              # 2-class data trained as 1 sigmoid channel (foreground = class 1)


@dataclass(frozen=True)
class ModelConfig:
    name: str | None = None                   # None = chosen for the hardware and budget
    encoder: str | None = None                # timm/smp encoder name for encoder-decoder models
    encoder_weights: str | None = None        # None | imagenet | path to a .safetensors/.pth file
    # ---- fine-tuning, deep supervision, distillation (engine/finetune.py, engine/objective.py)
    init_from: str | None = None              # run folder or weights file: load what fits, re-init the head
    aux_weight: float | None = None           # aux-head loss weight; None = the paper's (PSPNet 0.4, BiSeNetV2 1), 0 = off
    teacher: str | None = None                # run folder of a trained model to distill from
    distill_temperature: float = 1.0          # softmax temperature T of the pixel-wise KL term
    distill_weight: float = 1.0               # weight of the KL term (times T^2) next to the task loss


@dataclass(frozen=True)
class LossConfig:
    name: str = "ce"                          # ce | dice | focal | lovasz | sums like ce+dice, 0.5*focal+dice
    class_weights: list[float] | str | None = None   # one per class, or "auto" (median frequency balancing)
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | None = None
    max_minutes: float | None = None          # wall-clock budget for training (validation included)
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 1e-4
    schedule: str = "poly"                    # poly | cosine (both with linear warmup)
    warmup_steps: int | None = None
    amp: str = "auto"                         # auto | off | fp16 | bf16
    device: str = "auto"                      # auto | cpu | cuda | cuda:N
    threads: int | None = None                # CPU threads for torch; None = all cores
    seed: int = 0
    out: str | None = None                    # run folder; None = runs/<model>-<timestamp>
    # ---- scale, faults and speed (engine/trainer.py, engine/distributed.py)
    accumulate: int = 1                       # micro-batches per optimizer step (effective batch = batch_size x accumulate)
    clip_grad: float | None = None            # max global gradient norm; None = no clipping
    ema: float | None = None                  # EMA decay of the weights (e.g. 0.999); evaluated and saved instead
    channels_last: bool | None = None         # NHWC memory format; None = on for the CPU (see engine/recipe.py)
    compile: bool = False                     # torch.compile the model (opt-in: compile time is minutes)
    sync_bn: bool = False                     # SyncBatchNorm across ranks under torchrun
    sampling: str = "uniform"                 # uniform | repeat (repeat-factor sampling of images with rare classes)
    repeat_threshold: float = 0.1             # repeat sampling: classes in fewer than this share of images are rare
    checkpoint_minutes: float = 10.0          # also save the resumable state mid-epoch this often (0 = every step)
    logger: str = "csv"                       # csv | tensorboard (CSV is always written)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["data"]["image_size"] is not None:
            d["data"]["image_size"] = list(d["data"]["image_size"])
        return d

    def replace(self, **overrides) -> "Config":
        """Override dotted keys, e.g. replace(**{"train.lr": 1e-3}); values are validated."""
        return from_dict(self.to_dict(), overrides)


_SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}


def valid_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in _SECTION_TYPES.items() for f in dataclasses.fields(cls)]


# the three fields whose short name is their section's (--data, --model, --loss); every other field's short
# name is the field's own (train.max_minutes -> max_minutes / --max-minutes)
_SECTION_NAMED = {"data.root": "data", "model.name": "model", "loss.name": "loss"}


def option_keys() -> dict[str, str]:
    """Keyword (Python API) and flag (CLI, with '-' for '_') -> config key, one per config field: options are
    declared once, by the dataclasses above, and the CLI and the API are generated from them."""
    return {_SECTION_NAMED.get(k, k.partition(".")[2]): k for k in valid_keys()}


def _unknown(key: str, where: str) -> PixelsegError:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return PixelsegError(f"{where}: unknown config key '{key}'{hint}; valid keys: {', '.join(valid_keys())}")


def _coerce(key: str, value, annotation, where: str):
    """Check/convert one value against its field annotation (a string, thanks to __future__ annotations)."""
    ann = annotation.replace(" ", "")
    optional = ann.endswith("|None")
    base = ann[: -len("|None")] if optional else ann
    if value is None:
        if optional:
            return None
        raise PixelsegError(f"{where}: '{key}' cannot be empty")

    def bad(expect):
        return PixelsegError(f"{where}: '{key}' must be {expect}, got {value!r}")

    if base == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise bad("true or false")
    if base == "list[float]|str":   # loss.class_weights: a list of numbers or "auto"
        if isinstance(value, str):
            if value.strip().lower() != "auto":
                raise bad("a list of numbers (one per class) or auto")
            return "auto"
        base = "list[float]"
    if base == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise bad("an integer")
        try:
            return int(value)
        except ValueError:
            raise bad("an integer") from None
    if base == "float":
        if isinstance(value, bool):
            raise bad("a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
    if base == "tuple[int,int]":
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
            raise bad("two positive integers [H, W] (or one for a square)")
        return tuple(value)
    if base == "list[float]":
        if not (isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise bad("a list of numbers")
        return [float(v) for v in value]
    raise TypeError(f"config field {key} has unsupported annotation {annotation}")  # a bug in this file


def from_dict(d: dict, overrides: dict | None = None, where: str = "config") -> Config:
    """Build a Config from a nested dict plus dotted-key overrides, rejecting unknown keys."""
    if not isinstance(d, dict):
        raise PixelsegError(f"{where}: expected a mapping with sections {', '.join(_SECTION_TYPES)}")
    merged: dict[str, dict] = {s: {} for s in _SECTION_TYPES}
    for section, values in d.items():
        if section not in _SECTION_TYPES:
            raise _unknown(str(section), where)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise PixelsegError(f"{where}: section '{section}' must be a mapping of keys to values")
        merged[section].update(values)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section not in _SECTION_TYPES or not key:
            raise _unknown(dotted, where)
        merged[section][key] = value
    built = {}
    for section, cls in _SECTION_TYPES.items():
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in merged[section].items():
            if key not in hints:
                raise _unknown(f"{section}.{key}", where)
            kwargs[key] = _coerce(f"{section}.{key}", value, hints[key], where)
        built[section] = cls(**kwargs)
    cfg = Config(**built)
    _check_values(cfg, where)
    return cfg


def _check_values(cfg: Config, where: str) -> None:
    t, dt = cfg.train, cfg.data
    checks = [
        (t.epochs is None or t.epochs > 0, "train.epochs must be positive"),
        (t.max_minutes is None or t.max_minutes > 0, "train.max_minutes must be positive"),
        (t.batch_size is None or t.batch_size > 0, "train.batch_size must be positive"),
        (t.lr is None or t.lr > 0, "train.lr must be positive"),
        (t.schedule in ("poly", "cosine"), "train.schedule must be poly or cosine"),
        (t.amp in ("auto", "off", "fp16", "bf16"), "train.amp must be auto, off, fp16 or bf16"),
        (dt.format == "auto" or dt.format in DATA_FORMATS, f"data.format must be auto or one of {', '.join(DATA_FORMATS)}"),
        (dt.augment is None or dt.augment in AUGMENT_PRESETS or dt.augment.lower().endswith((".yaml", ".yml", ".json")),
         f"data.augment must be one of {', '.join(AUGMENT_PRESETS)} or an albumentations pipeline file (.yaml/.json)"),
        (dt.in_channels is None or dt.in_channels > 0, "data.in_channels must be positive"),
        (0 < dt.val_fraction < 1, "data.val_fraction must be between 0 and 1"),
        (0 <= cfg.loss.label_smoothing < 1, "loss.label_smoothing must be in [0, 1)"),
        (cfg.model.aux_weight is None or cfg.model.aux_weight >= 0, "model.aux_weight must be 0 or more"),
        (cfg.model.distill_temperature > 0, "model.distill_temperature must be positive"),
        (cfg.model.distill_weight >= 0, "model.distill_weight must be 0 or more"),
        (t.accumulate >= 1, "train.accumulate must be 1 or more"),
        (t.clip_grad is None or t.clip_grad > 0, "train.clip_grad must be positive"),
        (t.ema is None or 0 < t.ema < 1, "train.ema must be a decay between 0 and 1, e.g. 0.999"),
        (t.sampling in ("uniform", "repeat"), "train.sampling must be uniform or repeat"),
        (0 < t.repeat_threshold <= 1, "train.repeat_threshold must be in (0, 1]"),
        (t.checkpoint_minutes >= 0, "train.checkpoint_minutes must be 0 or more"),
        (t.logger in ("csv", "tensorboard"), "train.logger must be csv or tensorboard"),
    ]
    for ok, msg in checks:
        if not ok:
            raise PixelsegError(f"{where}: {msg}")


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PixelsegError(f"{path}: config file not found; check the path given to --config") from None
    except IsADirectoryError:
        raise PixelsegError(f"{path}: is a folder, not a config file; give a YAML file "
                            f"(a run folder holds {path / 'config.yaml'})") from None
    except UnicodeDecodeError:
        raise PixelsegError(f"{path}: not a text file; give a YAML config file to --config") from None
    except yaml.YAMLError as e:
        raise PixelsegError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the file") from None
    return from_dict(d, overrides, where=str(path))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)

