"""Configuration: frozen dataclasses, one per concern, loaded from YAML and/or CLI flags.

Every field that says `None` means "let pixelseg choose" (see engine/recipe.py); the resolved
config, with every choice filled in, is written to the run folder as config.yaml so a run can be
reproduced with `pixelseg train --config RUN/config.yaml`. An unknown key is an error, never ignored.

This file is the one table of training options: each field carries its help text, its allowed values
(`choices`) and bounds (`gt`/`ge`/`lt`/`le`) in its metadata. Validation below, the `train` command's
flags (cli/train.py) and the API's keywords (api.SHORT_KEYS) are generated from it, so a new option is
added here and nowhere else.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pixelseg.errors import PixelsegError


# the dataset layouts data/formats.py reads and the augmentation presets of data/transforms.py (kept here as
# names only so that loading a config does not import the data stack; tests/data check they agree)
DATA_FORMATS = ("folder", "keras", "colormask", "voc", "cityscapes", "ade20k", "camvid", "camvid11", "coco", "labelme",
                "pairs")
AUGMENT_PRESETS = ("none", "light", "default", "strong", "aerial", "medical")
IMAGE_SIDE_MAX = 16384   # a network input side: past it one image is a decompression bomb of its own (issue 16)
THREADS_PER_CORE = 4        # the most CPU threads a command takes per core (config.threads_problem)
_SEED_MAX = 2**32 - 1     # numpy's seeding takes 0..2^32-1 in every version; torch and random take more


def opt(default=None, help: str = "", *, auto: str | None = None, choices: tuple | None = None,
        gt=None, ge=None, lt=None, le=None, factory=None):
    """A config field with its help text, allowed values and bounds. `auto` says what the default None means."""
    meta = {"help": help, "auto": auto, "choices": choices, "gt": gt, "ge": ge, "lt": lt, "le": le}
    meta = {k: v for k, v in meta.items() if v is not None}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    root: str | None = opt(None, "dataset root: folder, keras, VOC, Cityscapes, ADE20K, CamVid, color masks, COCO, "
                           "LabelMe", auto="the config file's, or the run's own with --resume")
    format: str = opt("auto", "dataset layout, instead of detecting it (see `pixelseg verify-dataset -h`)",
                      choices=("auto", *DATA_FORMATS))
    image_size: tuple[int, int] | None = opt(None, "network input size H W (one value = square)",
                                             auto="from the data and the hardware")
    scale: float | None = opt(None, "resize factor the model sees images at (big images: trained on crops at this "
                              "scale, predicted whole or by sliding window at it)",
                              auto="from the object sizes in the masks; small images are resized whole to image_size",
                              gt=0, le=4)
    crop: tuple[int, int] | None = opt(None, "training crop H W at data.scale (one value = square)",
                                       auto="fills the step's pixel budget for the device")
    crop_focus: float = opt(0.5, "share of training crops centred on a pixel of a class drawn uniformly among the "
                            "image's non-dominant classes (keeps small rare classes in the crops)", ge=0, le=1)
    augment: str | None = opt(None, f"{' | '.join(AUGMENT_PRESETS)}, or an albumentations pipeline file "
                              "(.yaml/.yml/.json, A.save format)", auto="by budget and hardware")
    in_channels: int | None = opt(None, "channels the network takes", auto="from the images (1 gray, 3 RGB, 4 RGBA)",
                                  gt=0)
    num_workers: int | None = opt(None, "data loading processes", auto="from the cores", ge=0)
    unlabelled: str | None = opt(None, "folder of images without masks to learn from as well (semi-supervised; "
                                 "see train.semi)", auto="ROOT/unlabelled when it exists")
    val_fraction: float = opt(0.1, "share of train held out for validation when the data has no val split",
                              gt=0, lt=1)
    binary_sigmoid: bool = opt(False, "2-class data trained as one sigmoid channel (foreground = class 1) instead "
                               "of 2 softmax channels")


@dataclass(frozen=True)
class ModelConfig:
    name: str | None = opt(None, "model name (see `pixelseg models`)", auto="chosen for the hardware and budget")
    encoder: str | None = opt(None, "encoder of encoder-decoder models, e.g. resnet34, mobilenet_v2, tu-<timm name>",
                              auto="the model's own")
    encoder_weights: str | None = opt(None, "'imagenet' (the weights installed with pixelseg where the encoder "
                                      "has them, else the hub), a local .safetensors/.pth file, or 'none' (random init)",
                                      auto="ImageNet weights where they can be had (installed package, then hub), "
                                      "else random")
    # ---- fine-tuning, deep supervision, distillation (engine/finetune.py, engine/objective.py)
    init_from: str | None = opt(None, "start from a run folder or weights file: what fits is loaded (and printed), "
                                "the head re-initialised when the class count differs", auto="--encoder-weights, else random")
    aux_weight: float | None = opt(None, "loss weight of the auxiliary heads (pspnet, bisenetv2); 0 = off",
                                   auto="the paper's (PSPNet 0.4, BiSeNetV2 1)", ge=0)
    teacher: str | None = opt(None, "distill from this trained run folder (pixel-wise KL on softened outputs)",
                                auto="no distillation")
    distill_temperature: float = opt(1.0, "softmax temperature T of the distillation KL term", gt=0)
    distill_weight: float = opt(1.0, "weight of the KL term (times T^2) next to the task loss", ge=0)


@dataclass(frozen=True)
class LossConfig:
    name: str = opt("ce", "ce | ohem | dice | focal | jaccard | lovasz, or sums like ce+dice, 0.5*focal+dice")
    class_weights: list[float] | str | None = opt(None, "one weight per class, or 'auto' (median frequency balancing "
                                                  "over the train masks)", auto="equal weights")
    label_smoothing: float = opt(0.0, "label smoothing of the cross-entropy", ge=0, lt=1)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | None = opt(None, "passes over the training images", auto="50, or as many as --max-minutes allows",
                             gt=0)
    max_minutes: float | None = opt(None, "wall-clock budget (validation included); training stops cleanly when it "
                                    "runs out", auto="no time limit", gt=0)
    batch_size: int | None = opt(None, "images per step, GLOBAL: under torchrun split evenly over the processes",
                                 auto="what fits the hardware", gt=0)
    lr: float | None = opt(None, "peak learning rate", auto="the model's recipe", gt=0)
    weight_decay: float = opt(1e-4, "AdamW weight decay", ge=0)
    semi: str = opt("auto", "learn from data.unlabelled by consistency training (engine/semi.py): on, off, or auto "
                    "(the recipe decides from the budget and hardware, and says why)", choices=("auto", "on", "off"))
    semi_weight: float = opt(1.0, "weight of the unlabelled images' loss next to the labelled one", gt=0)
    semi_start: float | None = opt(None, "share of the run (its budget, or its epochs) trained on the labelled images "
                                   "alone before the unlabelled ones join, so the teacher starts from a model that "
                                   "learned the masks", auto="0.4 (benchmarks/semi.py)", ge=0, lt=1)
    semi_batch: int | None = opt(None, "unlabelled images per step, GLOBAL (at least 2: CutMix mixes within the "
                                 "batch)", auto="half the labelled batch, at least 2 (benchmarks/semi.py)", ge=2)
    semi_soft: bool = opt(True, "pixels under their class's confidence threshold teach too, weighted by how far "
                          "under (SoftMatch); off, they are ignored (FixMatch); measured with benchmarks/semi.py")
    encoder_lr_scale: float = opt(1.0, "learning rate of a pretrained encoder as a share of the peak rate (the decoder "
                                  "and head learn at the full rate; measured with benchmarks/recipes.py)", gt=0, le=1)
    encoder_bn: str = opt("train", "BatchNorm of the encoder: train (batch statistics, updated running means) or "
                          "frozen (keeps the pretrained statistics and affine)", choices=("train", "frozen"))
    schedule: str = opt("poly", "learning-rate schedule after the linear warmup", choices=("poly", "cosine"))
    warmup_steps: int | None = opt(None, "optimizer steps of linear warmup", auto="the first few percent of the run",
                                 ge=0)
    amp: str = opt("auto", "mixed precision", choices=("auto", "off", "fp16", "bf16"))
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    threads: int | None = opt(None, "CPU threads for torch", auto="all cores", ge=1)
    seed: int = opt(0, "random seed (data order, augmentation, initialisation)", ge=0, le=_SEED_MAX)
    out: str | None = opt(None, "run folder", auto="runs/<model>-<time>")
    # ---- scale, faults and speed (engine/trainer.py, engine/distributed.py)
    accumulate: int = opt(1, "batches per optimizer step (gradient accumulation; effective batch = batch_size x "
                          "accumulate)", ge=1)
    clip_grad: float | None = opt(None, "clip the global gradient norm to this", auto="no clipping", gt=0)
    ema: float | None = opt(None, "keep an EMA of the weights with this decay (e.g. 0.999); it is evaluated and saved",
                            auto="off", gt=0, lt=1)
    channels_last: bool | None = opt(None, "NHWC memory format", auto="on for the CPU (see engine/recipe.py)")
    compile: bool = opt(False, "torch.compile the model (opt-in: compiling takes minutes)")
    sync_bn: bool = opt(False, "SyncBatchNorm across torchrun ranks")
    sampling: str = opt("uniform", "repeat: repeat-factor sampling of images with rare classes",
                        choices=("uniform", "repeat"))
    repeat_threshold: float = opt(0.1, "repeat sampling: classes in fewer than this share of images are rare",
                                  gt=0, le=1)
    checkpoint_minutes: float = opt(10.0, "also save the resumable state mid-epoch this often (0 = every step)", ge=0)
    logger: str = opt("csv", "experiment tracker; RUN/metrics.csv is always written. tensorboard: RUN/tensorboard; "
                      "mlflow: MLFLOW_TRACKING_URI or a local store RUN/../mlruns; wandb: offline under RUN/wandb "
                      "(see pixelseg/engine/tracking.py)", choices=("csv", "tensorboard", "mlflow", "wandb"))


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("image_size", "crop"):
            if d["data"][key] is not None:
                d["data"][key] = list(d["data"][key])
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


def config_fields() -> list[tuple[str, dataclasses.Field]]:
    """(dotted key, dataclass field) for every option, in declaration order: the one table of options (each
    field's metadata holds help, auto, choices and bounds; see `opt`)."""
    return [(f"{s}.{f.name}", f) for s, cls in _SECTION_TYPES.items() for f in dataclasses.fields(cls)]


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
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and
                all(isinstance(v, int) and 0 < v <= IMAGE_SIDE_MAX for v in value)):
            raise bad(f"two positive integers [H, W] up to {IMAGE_SIDE_MAX} (or one for a square)")
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


def bounds_problem(meta, value) -> str | None:
    """What is wrong with `value` against a field's choices and bounds (None when nothing): the words after
    the key's (or the flag's) name, shared by the config checks and the CLI's flag types."""
    choices = meta.get("choices")
    if choices and value not in choices:
        return f"must be {', '.join(map(str, choices[:-1]))} or {choices[-1]}"
    gt, ge, lt, le = (meta.get(k) for k in ("gt", "ge", "lt", "le"))
    if isinstance(value, float) and any(b is not None for b in (gt, ge, lt, le)) and math.isinf(value):
        return "must be a finite number"
    if value is None or (gt is None or value > gt) and (ge is None or value >= ge) and \
            (lt is None or value < lt) and (le is None or value <= le):
        return None
    low, high = (gt if gt is not None else ge), (lt if lt is not None else le)
    if high is None:
        return "must be positive" if gt == 0 else f"must be {low} or more" if gt is None else f"must be more than {low}"
    return f"must be in {'(' if gt is not None else '['}{low}, {high}{')' if lt is not None else ']'}"


def threads_problem(n) -> str | None:
    """Why `n` CPU threads for torch will not do (None when it will): past a few per core OpenMP's thread stacks
    exhaust memory before any work (100000 threads: a segfault or an ImportError while loading, issue 27)."""
    import os
    top = THREADS_PER_CORE * (os.cpu_count() or 1)
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= top:
        return f"must be in [1, {top}] ({THREADS_PER_CORE} per CPU core, {os.cpu_count() or 1} here), got {n!r}"
    return None


# the largest window overlap: 0.9 already runs 100 times the windows of no overlap (a step of a tenth of the
# window each way); above it the count grows without bound (0.999 is a step of one pixel: issue 27)
MAX_OVERLAP = 0.9


def check_overlap(overlap) -> None:
    """--overlap must be a share of the window in [0, MAX_OVERLAP]; NaN and infinities are refused."""
    try:
        value = float(overlap)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 <= value <= MAX_OVERLAP:
        raise PixelsegError(f"--overlap {overlap}: must be in [0, {MAX_OVERLAP}] (a share of the window, e.g. 0.25; "
                            f"{MAX_OVERLAP} already runs 100 times the windows of 0)")


def check_threads(n, name: str = "--threads") -> None:
    """Raise a one-line PixelsegError naming `name` when threads_problem(n) has one (before torch is set up)."""
    problem = threads_problem(n)
    if problem:
        raise PixelsegError(f"{name} {problem}")


def _check_values(cfg: Config, where: str) -> None:
    for key, f in config_fields():
        section, _, name = key.partition(".")
        problem = bounds_problem(f.metadata, getattr(getattr(cfg, section), name))
        if problem:
            raise PixelsegError(f"{where}: {key} {problem}")
    problem = threads_problem(cfg.train.threads)
    if problem:
        raise PixelsegError(f"{where}: train.threads (--threads) {problem}")
    augment = cfg.data.augment
    if not (augment is None or augment in AUGMENT_PRESETS or augment.lower().endswith((".yaml", ".yml", ".json"))):
        raise PixelsegError(f"{where}: data.augment {augment!r} must be one of {', '.join(AUGMENT_PRESETS)} or an albumentations "
                            "pipeline file (.yaml/.json)")


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """The config file, validated on its own first (a wrong value in the file is reported even where a flag
    overrides it: the file is what a later `--config` reuses), then with the overrides applied."""
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
    cfg = from_dict(d, None, where=str(path))
    return cfg if not overrides else from_dict(d, overrides, where=str(path))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


# keyword (and CLI flag) -> config key, generated from the config fields
SHORT_KEYS = option_keys()


def check_options(kwargs: dict) -> None:
    """Every keyword a training option (the CLI's long options with _), with a did-you-mean for a typo."""
    for k in kwargs:
        if k not in SHORT_KEYS:
            close = difflib.get_close_matches(k, list(SHORT_KEYS), 1, 0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise PixelsegError(f"unknown training option '{k}'; {hint}valid: {', '.join(sorted(SHORT_KEYS))}")


def make_config(config: str | Path | None = None, **kwargs) -> Config:
    """The Config of the keyword options (the CLI's long options with _), over `config` (a YAML file) when given."""
    check_options(kwargs)
    overrides = {SHORT_KEYS[k]: v for k, v in kwargs.items() if v is not None}
    if config is not None:
        return load_config(config, overrides)
    return from_dict({}, overrides)
