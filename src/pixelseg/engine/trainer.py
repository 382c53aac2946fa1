"""The training loop, readable top to bottom: data -> model -> steps under a wall-clock budget -> run folder.

Schedule: linear warmup then poly or cosine decay, driven by *progress* = the larger of the step
fraction (with --epochs) and the time fraction (with --max-minutes), so a time-budgeted run still
anneals to a low learning rate exactly when its budget ends.

Scale: under `torchrun --nproc-per-node N -m pixelseg train ...` every rank runs this same function
(engine/distributed.py): DistributedDataParallel, each global batch of `train.batch_size` split
evenly over the ranks (so a run gives the same batches on 1 or N processes), validation sharded and
its confusion matrix all-reduced, rank 0 alone writing the run folder and showing progress.

Faults: the resumable state (model, optimizer, scheduler position, scaler, EMA, RNG, epoch/step,
best metric) is saved atomically and durably (tmp + fsync + rename) at every epoch end, every
`train.checkpoint_minutes` and on SIGTERM/SIGINT, so a kill -9 at any moment loses at most that
interval; a non-finite loss stops the run before anything broken is saved.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from torch.utils.data import DataLoader, Sampler, Subset

from pixelseg.config import Config, dump_config
from pixelseg.data.checks import require_clean
from pixelseg.data.classes import output_channels
from pixelseg.data.dataset import EvalDataset, SegDataset, eval_collate
from pixelseg.data.formats import open_dataset
from pixelseg.data.prefetch import prefetched
from pixelseg.data.sampling import class_stats, epoch_order, median_frequency_weights, repeat_factors
from pixelseg.data.transforms import check_augment, eval_transform, train_transform
from pixelseg.engine import distributed as ddp
from pixelseg.engine.checkpoint import load_state, save_state, save_weights
from pixelseg.engine.recipe import detect_hardware, resolve
from pixelseg.errors import PixelsegError
from pixelseg.fileio import write_json, write_text
from pixelseg.models.outputs import resize_logits
from pixelseg.losses import build_loss, parse_loss_spec
from pixelseg.metrics import ConfusionMatrix, labels_from_logits, summarize
from pixelseg.engine import finetune
from pixelseg.engine.objective import build_objective
from pixelseg.models import MODELS, build_model, count_parameters, model_mean_std
from pixelseg.run import Preprocessing, RunInfo, is_run, read_run, write_run_info

VAL_SHARE = 0.10                  # validation may take at most this share of a time-budgeted run
DISK_MARGIN = 64 * 2**20          # free space asked for beyond the checkpoints themselves


class EpochSampler(Sampler):
    """This rank's share of one epoch's global sample order, from `start` (samples already consumed,
    for mid-epoch resume) on. Rank r takes every world-th sample from position r, so the r-th slices
    of the ranks' batches j together are exactly global batch j of a one-process run. The tail is cut
    to a multiple of the world size so every rank takes the same number of steps (as DistributedSampler
    with drop_last; that class cannot start mid-epoch or take a repeat-factor order, hence this one)."""

    def __init__(self, order: list[int], start: int = 0, rank: int = 0, world: int = 1):
        rest = order[start:]
        self.indices = rest[rank:len(rest) // world * world:world]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


@dataclass
class State:
    epoch: int = 0                # epochs completed
    offset: int = 0               # samples already consumed in the current epoch (mid-epoch checkpoints)
    step: int = 0                 # batches trained on
    updates: int = 0              # optimizer steps (one every train.accumulate batches); drives the schedule
    elapsed: float = 0.0          # training + validation seconds, summed over resumes
    data_wait: float = 0.0        # of which the training loop waited for the data loader
    val_time: float = 0.0         # of which validation took
    best_miou: float = -1.0
    best_epoch: int = -1
    history: list = field(default_factory=list)


class NonFiniteLoss(PixelsegError):
    pass


def lr_factor(progress: float, warmup: float, schedule: str) -> float:
    if progress < warmup:
        return (progress + 1e-3) / (warmup + 1e-3)
    p = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    return (1.0 - p) ** 0.9


def param_groups(model: torch.nn.Module, weight_decay: float):
    """No weight decay on norms and biases (the usual AdamW practice)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def evaluate(model, loader, num_classes: int, ignore_index: int, device, amp_dtype=None) -> ConfusionMatrix:
    """Confusion matrix at each mask's ORIGINAL resolution (logits resized back, as predict does).

    A model trained in channels_last is evaluated in the contiguous format that load/predict use: NHWC
    convolutions round differently (~1e-5), which would flip near-tie pixels and make the training metric
    disagree with `pixelseg evaluate` on the same weights. The switch happens outside inference mode, or
    the parameters would become inference tensors that training cannot use afterwards.
    """
    model.eval()
    nhwc = any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())
    if nhwc:
        with torch.no_grad():
            model.to(memory_format=torch.contiguous_format)
    cm = ConfusionMatrix(num_classes, ignore_index)
    try:
        with torch.inference_mode(), prefetched(loader) as it:   # the next batches decode while one is scored
            for x, masks, _ in it:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(x.to(device, non_blocking=True))
                for i, mask in enumerate(masks):
                    pred = labels_from_logits(resize_logits(logits[i:i + 1].float(), tuple(mask.shape)))[0]  # argmax / sigmoid
                    cm.update(pred, mask.to(device))
    finally:
        if nhwc:
            with torch.no_grad():
                model.to(memory_format=torch.channels_last)
    return cm


class _StopFlag:
    """SIGTERM/SIGINT ask the loop to stop at the end of the current step and save; a second SIGINT aborts."""

    def __init__(self):
        self.reason = None
        self._old = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (e.g. inside a server): no signal handling
            pass
        return self

    def _handle(self, signum, frame):
        if self.reason and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _default_out(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.model.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _write_history(run_dir: Path, history: list[dict]) -> None:
    if not history:
        return
    fields = list(dict.fromkeys(k for row in history for k in row))   # rows from older versions may lack a column
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, restval="")
    w.writeheader()
    w.writerows(history)
    write_text(run_dir / "metrics.csv", buf.getvalue())


# ---------------------------------------------------------------- checks before the first step

def _prepare_run_dir(run_dir: Path, resume: bool, need_bytes: int) -> None:
    """Rank 0, before any data is read: the run folder exists, is writable and has room for the
    checkpoints, and a resumed folder is rid of the temporary files a killed save left behind."""
    if resume:
        if not is_run(run_dir) and not (run_dir / "last.pt").exists():
            raise PixelsegError(f"{run_dir}: nothing to resume (no last.pt); start it without --resume")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise PixelsegError(f"{run_dir}: already holds files; pass --resume to continue that run or choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".pixelseg-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise PixelsegError(f"{run_dir}: cannot write the run folder ({e.strerror or e}); choose a writable --out") from None
    free = shutil.disk_usage(run_dir).free
    if free < need_bytes:
        raise PixelsegError(f"{run_dir}: only {free / 2**20:.0f} MiB free, the checkpoints need about "
                            f"{need_bytes / 2**20:.0f} MiB; free some space or choose another --out")
    # atomic_path writes ".<stem>.<random>.tmp<suffix>"; after a kill -9 in the middle of a save one
    # can remain. The complete file it was replacing is still in place, so the leftover is garbage.
    for leftover in run_dir.glob(".*.tmp*"):
        leftover.unlink(missing_ok=True)


def _checkpoint_bytes(model: torch.nn.Module, ema: bool) -> int:
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    # model.safetensors (+EMA) and last.pt (model, two AdamW moments, EMA), each briefly twice (tmp + old)
    copies = (1 + 3 + (1 if ema else 0)) * 2
    return weights * copies + DISK_MARGIN


def _check_data(index, cfg: Config, classes) -> dict:
    """Rank 0: every mask read once (a bad file stops us now, not in hour three), plus the class
    statistics the imbalance tools need."""
    reports = require_clean(index)
    out = {"class_pixels": {s: r.counts.tolist() for s, r in reports.items()}, "class_weights": None, "factors": None}
    if cfg.loss.class_weights == "auto" or cfg.train.sampling == "repeat":
        stats = class_stats(index.splits["train"], classes.num_classes, index.mask_color_channel)
        if cfg.loss.class_weights == "auto":
            out["class_weights"] = median_frequency_weights(stats)
        if cfg.train.sampling == "repeat":
            out["factors"] = repeat_factors(stats, cfg.train.repeat_threshold).tolist()
    return out


def _amp_dtype(amp: str, device: torch.device):
    if amp in ("off", "auto"):
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise PixelsegError("--amp fp16 needs a CUDA GPU (it relies on a loss scaler there); on the CPU use "
                                "--amp bf16 or off")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PixelsegError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use --amp fp16")
    return torch.bfloat16


def environment(cfg: Config, hw, d: ddp.Dist) -> dict:
    """What it takes to reproduce a run besides its config: versions, code, hardware, launch."""
    from importlib.metadata import PackageNotFoundError, version
    versions = {"python": platform.python_version()}
    for pkg in ("pixelseg", "torch", "torchvision", "timm", "segmentation-models-pytorch", "albumentations",
                "numpy", "opencv-python-headless", "opencv-python", "pillow", "safetensors"):
        with contextlib.suppress(PackageNotFoundError):
            versions[pkg] = version(pkg)
    env = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv, "cwd": os.getcwd(),
           "seed": cfg.train.seed, "versions": versions, "git": _git_state(Path.cwd()),
           "hardware": {"device": hw.device, "name": hw.name, "cores": hw.cores, "platform": platform.platform(),
                        "cpu": _cpu_name(), "cuda": torch.version.cuda,
                        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]},
           "distributed": {"world_size": d.world, "backend": d.backend,
                           "nodes": int(os.environ.get("GROUP_WORLD_SIZE", 1)) if d.enabled else 1}}
    return env


def _git_state(cwd: Path) -> dict | None:
    """The commit of the user's code (the repository around the working folder), if any."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
        return {"commit": head.stdout.strip(), "dirty": dirty, "root": git("rev-parse", "--show-toplevel").stdout.strip()}
    except (OSError, subprocess.TimeoutExpired):
        return None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
            "python": list(random.getstate()[1])}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(("MT19937", s["numpy"].numpy().astype(np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(s["python"]), None))


def _is_peer_failure(e: BaseException) -> bool:
    """A collective failed because another rank went away (gloo/NCCL report it as a RuntimeError)."""
    if isinstance(e, dist.DistError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "peer", "socket",
                                                                    "broken pipe", "timed out"))


# ---------------------------------------------------------------- the loop

def train(cfg: Config, resume: bool = False, console: Console | None = None, quiet: bool = False) -> Path:
    """Train per `cfg`; returns the run folder. With resume, continues cfg.train.out from its last state.
    Under torchrun, call it on every rank (the CLI does)."""
    rank, world, _ = ddp.env_world()
    console = console or Console(stderr=True, quiet=quiet or rank != 0)
    t_wall = time.time()
    if cfg.data.root is None:
        raise PixelsegError("no dataset given; pass --data ROOT (make one with `pixelseg data synth --out ROOT`)")
    # names first: a typo in --model or --loss should fail in a second, before any data is read
    cfg = finetune.adopt_run_architecture(cfg)       # --init-from RUN without --model: the run's architecture
    if cfg.model.name is not None:
        MODELS.get(cfg.model.name)
    parse_loss_spec(cfg.loss.name)
    check_augment(cfg.data.augment)   # a bad preset or pipeline file too (the ignore index is re-checked later)
    if cfg.train.logger == "tensorboard":
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (fail now, not after the first epoch)
        except ImportError:
            raise PixelsegError("--logger tensorboard needs the tensorboard package: pip install tensorboard") from None
    index = open_dataset(cfg.data.root, cfg.data.format, cfg.data.val_fraction)
    hw = detect_hardware(cfg.train.device)
    threads_given = cfg.train.threads is not None
    cfg, chosen = resolve(cfg, index, hw)
    d, device_name = ddp.setup(cfg.train.device)
    run_dir = None
    state = State()
    try:
        return _train(cfg, chosen, index, hw, d, device_name, resume, console, threads_given, t_wall, state)
    except Exception as e:
        if d.enabled and _is_peer_failure(e):
            raise PixelsegError(ddp.lost_peer_message(d, e, Path(cfg.train.out) if cfg.train.out else run_dir,
                                                      state.step)) from None
        raise
    finally:
        ddp.teardown(d)


def _train(cfg: Config, chosen, index, hw, d: ddp.Dist, device_name: str, resume: bool, console: Console,
           threads_given: bool, t_wall: float, state: State) -> Path:
    classes = index.classes
    if d.enabled and any(k == "train.batch_size" for k, _, _ in chosen):
        # the recipe picks a batch for one device; under torchrun every rank gets that much
        bs = cfg.train.batch_size * d.world
        cfg = cfg.replace(**{"train.batch_size": bs})
        chosen = [(k, str(bs) if k == "train.batch_size" else v, f"{w}, x {d.world} ranks" if k == "train.batch_size" else w)
                  for k, v, w in chosen]
    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    model = build_model(cfg.model.name, output_channels(classes, cfg.data.binary_sigmoid), cfg.data.in_channels,
                        cfg.model.encoder, None if resume else cfg.model.encoder_weights)
    if cfg.model.init_from and not resume:           # fine-tune: what fits is loaded, the user is told what not
        console.print(finetune.init_from(model, cfg.model.init_from, cfg.model.name).summary(len(model.state_dict())))
    for note in index.notes:
        console.print(f"[yellow]note:[/] {note}")

    # ---- run folder (rank 0): never overwrite a run by accident; writable, room for checkpoints
    run_dir = Path(cfg.train.out) if cfg.train.out else _default_out(cfg)
    run_dir = Path(ddp.broadcast(d, str(run_dir)))          # the timestamped default is rank 0's
    ddp.main_first(d, _prepare_run_dir, run_dir, resume, _checkpoint_bytes(model, cfg.train.ema is not None))
    cfg = cfg.replace(**{"train.out": str(run_dir)})

    # ---- data: checked once on rank 0, which hands the class statistics to everyone
    t0 = time.time()
    data_info = ddp.main_first(d, _check_data, index, cfg, classes)
    if data_info["class_weights"] is not None:
        cfg = cfg.replace(**{"loss.class_weights": data_info["class_weights"]})
        chosen.append(("loss.class_weights", ", ".join(f"{w:.3g}" for w in data_info["class_weights"]),
                       "median frequency balancing over the train masks"))
    factors = np.asarray(data_info["factors"]) if data_info["factors"] is not None else None
    train_samples, val_samples = index.splits["train"], index.splits["val"]
    bs = cfg.train.batch_size
    if len(train_samples) < bs:
        bs = max(d.world, len(train_samples) // d.world * d.world)
        console.print(f"[yellow]note:[/] only {len(train_samples)} training images: batch size lowered to {bs}")
    if bs % d.world:
        raise PixelsegError(f"train.batch_size {bs} is the global batch and must split evenly over the {d.world} "
                            f"processes; use a multiple of {d.world}")
    local_bs = bs // d.world
    in_ch = cfg.data.in_channels
    mean, std = model_mean_std(model, in_ch)         # the encoder's pretraining statistics when it declares them
    size = cfg.data.image_size
    pre = Preprocessing(size, tuple(mean), tuple(std), in_ch)
    tf_train = train_transform(size, cfg.data.augment, classes.ignore_index, in_ch)
    ds_train = SegDataset(train_samples, classes.num_classes, classes.ignore_index, in_ch, mean, std, tf_train,
                          index.mask_color_channel)
    ds_val = EvalDataset(val_samples, classes.num_classes, classes.ignore_index, in_ch, mean, std,
                         eval_transform(size), index.mask_color_channel)
    nw = cfg.data.num_workers
    device = torch.device(device_name)
    pin = device.type == "cuda"

    # images are resized to one size, masks stay a list at their own sizes: any val set batches.
    # Each rank validates its own share; the confusion matrices are summed (all-reduce), not averaged.
    val_part = Subset(ds_val, range(d.rank, len(ds_val), d.world)) if d.enabled else ds_val
    val_loader = DataLoader(val_part, batch_size=local_bs, shuffle=False, num_workers=nw, collate_fn=eval_collate,
                            pin_memory=pin)

    # ---- model, loss, optimizer
    if device.type == "cpu":
        threads = cfg.train.threads
        if d.enabled and not threads_given:   # ranks on one machine share its cores
            threads = max(1, hw.cores // int(os.environ.get("LOCAL_WORLD_SIZE", d.world)))
        if threads:
            torch.set_num_threads(threads)
    report = getattr(model, "encoder_report", None)
    if report:
        console.print(f"encoder weights: {report['loaded']}/{report['total']} tensors loaded from {cfg.model.encoder_weights}"
                      + (f", first conv adapted to {in_ch} channels" if report["adapted"] else "")
                      + (f", {len(report['missing'])} left at random init" if report["missing"] else ""))
    if d.enabled and cfg.train.sync_bn:
        if device.type != "cuda":
            raise PixelsegError("train.sync_bn: PyTorch's SyncBatchNorm runs on GPUs only; on CPU ranks leave it off "
                                "(each rank then normalizes over its own share of the batch)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.loss.name, classes.num_classes, classes.ignore_index, cfg.loss.class_weights,
                         cfg.loss.label_smoothing, cfg.data.binary_sigmoid).to(device)
    objective = build_objective(cfg, model, loss_fn, classes.num_classes, classes.ignore_index, mean, std, device)
    for note in objective.describe():
        console.print(f"objective: {note}")
    optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr)
    amp_dtype = _amp_dtype(cfg.train.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = None
    if cfg.train.ema is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema), use_buffers=True)

    best_cm = None
    if resume and ddp.main_first(d, lambda: (run_dir / "last.pt").exists()):
        saved = ddp.main_first(d, load_state, run_dir / "last.pt")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if "scaler" in saved:
            scaler.load_state_dict(saved["scaler"])
        if ema is not None and saved.get("ema") is not None:
            ema.load_state_dict(saved["ema"])
        if "rng" in saved:
            _set_rng_state(saved["rng"])
        if saved.get("best_cm") is not None:
            best_cm = ConfusionMatrix(classes.num_classes, classes.ignore_index)
            best_cm._mat = saved["best_cm"].to(device)
        state.__dict__.update(State(**saved["state"]).__dict__)
        if "updates" not in saved["state"]:     # saved before accumulation existed: one update per batch
            state.updates = state.step
        console.print(f"resumed {run_dir} at epoch {state.epoch} (+{state.offset} images), step {state.step}, "
                      f"{state.elapsed / 60:.1f} min spent, best mIoU {max(state.best_miou, 0):.4f}")

    train_model = model
    if d.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(train_model) if cfg.train.compile else train_model
    eval_model = ema.module if ema is not None else model

    # ---- the run folder's contract, written before the first step so a killed run is still identifiable
    info = RunInfo(run_dir, cfg.model.name, cfg.model.encoder, classes, pre,
                   read_run(run_dir, need_weights=False).best if resume and d.is_main and is_run(run_dir) else {},
                   0.5 if cfg.data.binary_sigmoid else None)
    writer = None
    if d.is_main:
        write_text(run_dir / "config.yaml", dump_config(cfg))
        write_json(run_dir / "classes.json", classes.to_dict())
        write_json(run_dir / "recipe.json", {"hardware": {"device": hw.device, "name": hw.name, "cores": hw.cores},
                                             "chosen": [{"key": k, "value": v, "why": w} for k, v, w in chosen],
                                             "class_pixels": data_info["class_pixels"],
                                             **({"repeat_factors": data_info["factors"]} if factors is not None else {})})
        _record_environment(run_dir, environment(cfg, hw, d))
        if cfg.train.logger == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(run_dir / "tensorboard"))
    _print_plan(console, cfg, chosen, hw, model, len(train_samples), len(val_samples), time.time() - t0, bs, d)

    budget = cfg.train.max_minutes * 60 if cfg.train.max_minutes else math.inf
    expected_epoch = float(factors.sum()) if factors is not None else float(len(ds_train))
    acc = cfg.train.accumulate
    steps_per_epoch = max(1, math.ceil((int(expected_epoch) // bs) / acc))    # optimizer steps
    total_steps = cfg.train.epochs * steps_per_epoch if cfg.train.epochs else None

    def progress(step: int, elapsed: float) -> float:
        p_steps = step / total_steps if total_steps else 0.0
        p_time = elapsed / budget if budget < math.inf else 0.0
        return min(1.0, max(p_steps, p_time))

    def set_lr(step: int, elapsed: float) -> float:
        p = progress(step, elapsed)
        if cfg.train.warmup_steps is not None:
            f = min(1.0, (step + 1) / max(1, cfg.train.warmup_steps)) * lr_factor(p, 0.0, cfg.train.schedule)
        else:
            f = lr_factor(p, 0.05, cfg.train.schedule)   # warm up over the first 5% of the schedule
        lr = cfg.train.lr * f
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr

    def save_last():
        if d.is_main:
            _save_last(run_dir, model, optimizer, scaler, ema, state, best_cm)

    val_seconds = None            # measured on the first validation
    val_every = 1
    stop_reason = None
    signalled = False
    last_save = time.time()
    params = [p for p in model.parameters() if p.requires_grad]
    with _StopFlag() as flag, _save_on_lost_peer(d, save_last, lambda: (state.offset // bs) % acc == 0):
        while cfg.train.epochs is None or state.epoch < cfg.train.epochs:
            epoch = state.epoch
            order = epoch_order(len(ds_train), cfg.train.seed, epoch, factors)
            epoch_batches = len(order) // bs
            sampler = EpochSampler(order, state.offset, d.rank, d.world)
            ds_train.set_epoch(cfg.train.seed, epoch)
            # the loader's own generator: its worker seeds do not draw from the global RNG, which stays
            # the model's alone (dropout) and so replays exactly after a resume
            loader = DataLoader(ds_train, batch_size=local_bs, sampler=sampler, num_workers=nw, drop_last=True,
                                pin_memory=pin, persistent_workers=False,
                                generator=torch.Generator().manual_seed(cfg.train.seed * 7919 + epoch))
            train_model.train()
            t_epoch, loss_sum, loss_n, lr = time.time(), 0.0, 0, cfg.train.lr
            reserve = val_seconds if val_seconds is not None else 0.0
            tick = time.time()       # wall clock: data loading counts against the budget too
            # the next batches decode while this one trains
            with _progress_bar(console, len(loader), f"epoch {epoch + 1}") as bar, prefetched(loader) as batches:
                while True:
                    t_fetch = time.time()
                    try:
                        x, y = next(batches)
                    except StopIteration:
                        break
                    state.data_wait += time.time() - t_fetch
                    batch_i = state.offset // bs                     # global batch index in this epoch
                    window_start = batch_i // acc * acc
                    window = min(acc, epoch_batches - window_start)  # the epoch's last window may be short
                    boundary = batch_i + 1 == window_start + window  # this batch ends an optimizer step
                    lr = set_lr(state.updates, state.elapsed)
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    if cfg.train.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    sync = contextlib.nullcontext() if boundary or not d.enabled else train_model.no_sync()
                    with sync:
                        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                            loss = objective(fwd, x, y)    # task loss (+ aux heads, + distillation)
                        loss_value = float(loss.detach())
                        # before the backward: a NaN on one rank must stop every rank, not reach the all-reduce
                        bad, = ddp.agree(d, [float(not math.isfinite(loss_value))])
                        if bad:
                            _non_finite(run_dir, state, epoch, cfg, f"loss is {loss_value}" if not math.isfinite(loss_value)
                                        else "loss is NaN/inf on another rank", d)
                        scaler.scale(loss / window).backward()
                    if boundary:
                        if cfg.train.clip_grad is not None:
                            scaler.unscale_(optimizer)
                            norm = torch.nn.utils.clip_grad_norm_(params, cfg.train.clip_grad)
                            # with a loss scaler, inf gradients are routine (the step is skipped and the
                            # scale lowered); without one they would poison the weights
                            if not scaler.is_enabled() and not torch.isfinite(norm):
                                _non_finite(run_dir, state, epoch, cfg, f"gradient norm is {float(norm)}", d)
                        scaler.step(optimizer)
                        scaler.update()
                        optimizer.zero_grad(set_to_none=True)
                        if ema is not None:
                            ema.update_parameters(model)
                        state.updates += 1
                    loss_sum += loss_value
                    loss_n += 1
                    state.step += 1
                    state.offset += bs
                    now = time.time()
                    state.elapsed += now - tick
                    bar.advance(loss_sum / loss_n, lr, bs / max(1e-6, now - tick))
                    if writer is not None:
                        writer.add_scalar("train/loss", loss_value, state.step)
                        writer.add_scalar("train/lr", lr, state.step)
                    tick = now
                    stop_sig, stop_time = ddp.agree(d, [float(flag.reason is not None),
                                                        float(state.elapsed + reserve >= budget)])
                    if stop_sig and stop_reason is None:
                        signalled = True
                        stop_reason = f"stopped by {flag.reason or 'a signal to another rank'}"
                    elif stop_time and stop_reason is None:
                        stop_reason = f"time budget of {cfg.train.max_minutes:g} min reached"
                    if not boundary:          # the accumulated gradients live only in memory: no stop, no save
                        continue
                    if stop_reason:
                        break
                    if time.time() - last_save >= cfg.train.checkpoint_minutes * 60:
                        save_last()
                        last_save = time.time()
            finished_epoch = stop_reason is None
            if finished_epoch:
                state.epoch += 1
                state.offset = 0
            last_epoch = cfg.train.epochs is not None and state.epoch >= cfg.train.epochs
            if d.enabled:   # the logged loss is the global batch's, not rank 0's share
                loss_sum = ddp.agree(d, [loss_sum], op="sum")[0] / d.world
            row = {"epoch": round(state.epoch + state.offset / max(1, len(order)), 3), "step": state.step,
                   "elapsed_s": round(state.elapsed, 1), "lr": f"{lr:.3g}",
                   "train_loss": round(loss_sum / max(loss_n, 1), 5),
                   "val_mIoU": "", "val_pixel_accuracy": "", "val_mean_dice": "",
                   "data_wait": round(state.data_wait / max(state.elapsed - state.val_time, 1e-9), 4)}
            if stop_reason or last_epoch or state.epoch % val_every == 0:
                t_val = time.time()
                cm = evaluate(eval_model, val_loader, classes.num_classes, classes.ignore_index, device, amp_dtype)
                cm.all_reduce()
                val_seconds = time.time() - t_val
                state.elapsed += val_seconds
                state.val_time += val_seconds
                s = summarize(cm.matrix, classes.names)
                miou = s["mIoU"] if s["mIoU"] is not None else 0.0
                row.update(val_mIoU=round(miou, 5), val_pixel_accuracy=round(s["pixel_accuracy"] or 0, 5),
                           val_mean_dice=round(s["mean_dice"] or 0, 5))
                improved = miou > state.best_miou       # the same on every rank: the matrix is global
                if improved:
                    state.best_miou, state.best_epoch = miou, state.epoch
                    best_cm = cm
                    if d.is_main:
                        _check_finite_weights(eval_model, run_dir, state)
                        save_weights(run_dir / "model.safetensors", eval_model)
                        info = replace(info, best={"epoch": row["epoch"], "step": state.step, "mIoU": round(miou, 5)})
                        write_run_info(info)
                epoch_s = time.time() - t_epoch - val_seconds
                if budget < math.inf and epoch_s > 0:   # keep validation to a small share of the budget
                    val_every = max(1, math.ceil(val_seconds / (VAL_SHARE * epoch_s)))
                val_every = int(ddp.agree(d, [val_every])[0])   # rank 0's clock is not the others'
                if writer is not None:
                    for key in ("val_mIoU", "val_pixel_accuracy", "val_mean_dice"):
                        writer.add_scalar(key.replace("_", "/", 1), row[key], state.step)
                console.print(f"epoch {row['epoch']:g}  loss {row['train_loss']:.4f}  val mIoU {miou:.4f}"
                              f"{'  [green]best[/]' if improved else ''}  lr {lr:.2g}  "
                              f"{state.elapsed / 60:.1f} min")
            state.history.append(row)
            if d.is_main:
                _write_history(run_dir, state.history)
            save_last()
            last_save = time.time()
            if stop_reason or last_epoch:
                break

    if writer is not None:
        writer.close()
    if signalled:
        console.print(f"[yellow]{stop_reason}[/]: state saved; continue with `pixelseg train --out {run_dir} --resume`")
    elif stop_reason:
        console.print(stop_reason)
    # ---- final metrics (rank 0): the best weights, on the full val split at original resolution
    if d.is_main:
        if best_cm is None:   # resumed from a state without the matrix and no better epoch since
            from pixelseg.run import load_model
            best = load_model(read_run(run_dir), device)
            full = DataLoader(ds_val, batch_size=local_bs, num_workers=nw, collate_fn=eval_collate)
            best_cm = evaluate(best, full, classes.num_classes, classes.ignore_index, device, amp_dtype)
        summary = summarize(best_cm.matrix, classes.names)
        summary.update(split="val", images=len(val_samples), checkpoint="model.safetensors",
                       epoch=info.best.get("epoch"), train_seconds=round(state.elapsed, 1),
                       wall_seconds=round(time.time() - t_wall, 1), hardware=hw.name, processes=d.world,
                       data_wait=round(state.data_wait / max(state.elapsed - state.val_time, 1e-9), 4),
                       images_per_s=round(state.step * bs / max(state.elapsed - state.val_time, 1e-9), 2),
                       stopped=stop_reason)
        write_json(run_dir / "metrics.json", summary)
    ddp.agree(d, [0.0])      # the other ranks return once the run folder is complete
    if signalled:
        raise KeyboardInterrupt
    return run_dir


@contextlib.contextmanager
def _save_on_lost_peer(d: ddp.Dist, save_last, between_steps):
    """When another rank dies mid-step, rank 0 still holds a consistent state if no gradient is
    half-accumulated (the failed step never reached the optimizer): save it, so the kill costs at most
    one step instead of everything since the last checkpoint."""
    try:
        yield
    except Exception as e:
        if d.enabled and d.is_main and _is_peer_failure(e) and between_steps():
            with contextlib.suppress(Exception):
                save_last()
        raise


def _non_finite(run_dir: Path, state: State, epoch: int, cfg: Config, what: str, d: ddp.Dist):
    """Stop on a NaN/inf before the update: last.pt keeps the last good state, nothing broken is written."""
    where = f" on rank {d.rank}" if d.enabled else ""
    raise NonFiniteLoss(f"{what} at step {state.step + 1} (epoch {epoch + 1}){where}; stopped without saving — "
                        f"{run_dir}/last.pt holds the last good state. Lower --lr (now {cfg.train.lr:g}), add "
                        "--clip-grad 1.0, or check the data")


def _check_finite_weights(model: torch.nn.Module, run_dir: Path, state: State) -> None:
    tensors = {k: v for k, v in model.state_dict().items() if v.is_floating_point() and v.numel()}
    # one fused kernel and one host sync: a NaN or inf anywhere in a tensor makes its norm non-finite
    norms = torch.stack(torch._foreach_norm([v.float() for v in tensors.values()])) if tensors else torch.zeros(0)
    if bool(torch.isfinite(norms).all()):
        return
    # the slow exact look only now (a norm also overflows for huge finite weights)
    bad = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise NonFiniteLoss(f"weights became NaN/inf ({bad[0]}{' and others' if len(bad) > 1 else ''}) by step "
                            f"{state.step}; stopped without saving — {run_dir}/last.pt holds the last good state. "
                            "Lower --lr or add --clip-grad 1.0")


def _save_last(run_dir, model, optimizer, scaler, ema, state: State, best_cm) -> None:
    _check_finite_weights(model, run_dir, state)
    blob = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "state": dict(state.__dict__), "rng": _rng_state(),
            "ema": ema.state_dict() if ema is not None else None,
            "best_cm": torch.from_numpy(best_cm.matrix) if best_cm is not None else None}
    try:
        save_state(run_dir / "last.pt", blob)
    except OSError as e:
        raise PixelsegError(f"{run_dir}/last.pt: cannot save the training state ({e.strerror or e}); the previous "
                            "last.pt is intact — free space, then continue with --resume") from None


def _record_environment(run_dir: Path, env: dict) -> None:
    """environment.json: one entry per session (the first run and each resume), newest last."""
    import json
    path = run_dir / "environment.json"
    sessions = []
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            sessions = json.loads(path.read_text()).get("sessions", [])
    write_json(path, {"sessions": sessions + [env]})


def _print_plan(console, cfg: Config, chosen, hw, model, n_train, n_val, check_s, bs, d: ddp.Dist) -> None:
    from rich.table import Table
    t = Table(title="pixelseg train", show_header=True, header_style="bold")
    t.add_column("setting")
    t.add_column("value")
    t.add_column("why")
    auto = {k: (v, w) for k, v, w in chosen}
    h, w = cfg.data.image_size
    tr = cfg.train
    rows = [
        ("hardware", hw.name + (f" ({hw.gpu_memory_gb:.0f} GB)" if hw.is_cuda else ""), ""),
        ("data", f"{cfg.data.root}: {n_train} train / {n_val} val images", f"masks checked in {check_s:.1f}s"),
        ("model.name", f"{cfg.model.name} ({count_parameters(model) / 1e6:.1f}M params)", auto.get("model.name", ("", "given"))[1]),
        ("model.encoder", str(cfg.model.encoder), auto.get("model.encoder", ("", "given"))[1]),
        ("data.image_size", f"{h}x{w}", auto.get("data.image_size", ("", "given"))[1]),
        ("train.batch_size", str(bs) + (f" ({bs // d.world} per rank)" if d.enabled else ""),
         auto.get("train.batch_size", ("", "given"))[1]),
        ("train.lr", f"{tr.lr:g} ({tr.schedule}, AdamW)", auto.get("train.lr", ("", "given"))[1]),
        ("budget", (f"{tr.max_minutes:g} min" if tr.max_minutes else "")
         + (" / " if tr.max_minutes and tr.epochs else "")
         + (f"{tr.epochs} epochs" if tr.epochs else ""), auto.get("train.epochs", ("", "given"))[1]),
        ("data.augment", cfg.data.augment, auto.get("data.augment", ("", "given"))[1]),
        ("loss", cfg.loss.name, ""),
        ("train.amp", tr.amp, auto.get("train.amp", ("", ""))[1]),
        ("out", tr.out, ""),
    ]
    if d.enabled:
        rows.insert(1, ("distributed", f"{d.world} processes ({d.backend})" + (", SyncBatchNorm" if tr.sync_bn else ""),
                        "torchrun"))
    if "loss.class_weights" in auto:
        rows.append(("loss.class_weights", *auto["loss.class_weights"]))
    extras = [f"accumulate {tr.accumulate}" if tr.accumulate > 1 else "", f"clip {tr.clip_grad:g}" if tr.clip_grad else "",
              f"EMA {tr.ema:g}" if tr.ema else "", "channels_last" if tr.channels_last else "",
              "torch.compile" if tr.compile else "", "repeat-factor sampling" if tr.sampling == "repeat" else "",
              "tensorboard" if tr.logger == "tensorboard" else ""]
    if any(extras):
        rows.append(("options", ", ".join(e for e in extras if e), ""))
    for r in rows:
        t.add_row(*r)
    console.print(t)


class _progress_bar:
    """A rich progress bar (loss, speed, ETA) on a terminal; silent in logs and CI."""

    def __init__(self, console: Console, total: int, title: str):
        self.console, self.total, self.title = console, total, title
        self.progress = None

    def __enter__(self):
        if self.console.is_terminal and not self.console.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2g}  "
                                                "{task.fields[ips]:.1f} img/s"), TimeRemainingColumn(),
                                     console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.title, total=self.total, loss=0.0, lr=0.0, ips=0.0)
        return self

    def advance(self, loss: float, lr: float, ips: float):
        if self.progress:
            self.progress.update(self.task, advance=1, loss=loss, lr=lr, ips=ips)

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()
