"""The training loop, readable top to bottom: data -> model -> steps under a wall-clock budget -> run folder.

Schedule: linear warmup then poly or cosine decay, driven by *progress* = the larger of the step
fraction (with --epochs) and the time fraction (with --max-minutes), so a time-budgeted run still
anneals to a low learning rate exactly when its budget ends.
"""
from __future__ import annotations

import csv
import io
import math
import random
import signal
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader, Sampler

from pixelseg.config import Config, dump_config
from pixelseg.data.checks import require_clean
from pixelseg.data.dataset import EvalDataset, SegDataset, eval_collate
from pixelseg.data.formats import open_dataset
from pixelseg.data.transforms import eval_transform, train_transform
from pixelseg.engine.checkpoint import load_state, save_state, save_weights
from pixelseg.engine.recipe import detect_hardware, resolve
from pixelseg.errors import PixelsegError
from pixelseg.fileio import write_json, write_text
from pixelseg.inference.predictor import resize_logits
from pixelseg.losses import build_loss, parse_loss_spec
from pixelseg.metrics import ConfusionMatrix, summarize
from pixelseg.models import MODELS, build_model, count_parameters, default_mean_std
from pixelseg.run import Preprocessing, RunInfo, is_run, read_run, write_run_info

CHECKPOINT_EVERY_S = 600          # also save the resumable state mid-epoch this often
VAL_SHARE = 0.10                  # validation may take at most this share of a time-budgeted run
MAX_BAD_STEPS = 20                # consecutive non-finite losses before giving up


class EpochSampler(Sampler):
    """A seeded permutation per epoch, optionally starting part-way: resuming mid-epoch replays the
    exact remaining data order of an uninterrupted run."""

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0):
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g)[self.start:].tolist())

    def __len__(self):
        return self.n - self.start


@dataclass
class State:
    epoch: int = 0                # epochs completed
    offset: int = 0               # samples already consumed in the current epoch (mid-epoch checkpoints)
    step: int = 0
    elapsed: float = 0.0          # training + validation seconds, summed over resumes
    best_miou: float = -1.0
    best_epoch: int = -1
    history: list = field(default_factory=list)


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


@torch.inference_mode()
def evaluate(model, loader, num_classes: int, ignore_index: int, device, amp_dtype=None) -> ConfusionMatrix:
    """Confusion matrix at each mask's ORIGINAL resolution (logits resized back, as predict does)."""
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index)
    for x, masks, _ in loader:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x.to(device, non_blocking=True))
        for i, mask in enumerate(masks):
            pred = resize_logits(logits[i:i + 1].float(), tuple(mask.shape))[0].argmax(0)
            cm.update(pred, mask.to(device))
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
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    write_text(run_dir / "metrics.csv", buf.getvalue())


def train(cfg: Config, resume: bool = False, console: Console | None = None, quiet: bool = False) -> Path:
    """Train per `cfg`; returns the run folder. With resume, continues cfg.train.out from its last state."""
    console = console or Console(stderr=True, quiet=quiet)
    t_wall = time.time()
    if cfg.data.root is None:
        raise PixelsegError("no dataset given; pass --data ROOT (make one with `pixelseg data synth --out ROOT`)")
    # names first: a typo in --model or --loss should fail in a second, before any data is read
    if cfg.model.name is not None:
        MODELS.get(cfg.model.name)
    parse_loss_spec(cfg.loss.name)
    index = open_dataset(cfg.data.root, cfg.data.format, cfg.data.val_fraction)
    hw = detect_hardware(cfg.train.device)
    cfg, chosen = resolve(cfg, index, hw)
    classes = index.classes
    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    model = build_model(cfg.model.name, classes.num_classes, cfg.data.in_channels, cfg.model.encoder,
                        None if resume else cfg.model.encoder_weights)
    for note in index.notes:
        console.print(f"[yellow]note:[/] {note}")

    # ---- run folder: never overwrite a run by accident
    run_dir = Path(cfg.train.out) if cfg.train.out else _default_out(cfg)
    if resume:
        if not is_run(run_dir) and not (run_dir / "last.pt").exists():
            raise PixelsegError(f"{run_dir}: nothing to resume (no last.pt); start it without --resume")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise PixelsegError(f"{run_dir}: already holds files; pass --resume to continue that run or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.replace(**{"train.out": str(run_dir)})

    # ---- data: every mask is checked before the first step, so a bad file stops us now, not in hour three
    t0 = time.time()
    reports = require_clean(index)
    train_samples, val_samples = index.splits["train"], index.splits["val"]
    bs = cfg.train.batch_size
    if len(train_samples) < bs:
        bs = max(1, len(train_samples))
        console.print(f"[yellow]note:[/] only {len(train_samples)} training images: batch size lowered to {bs}")
    in_ch = cfg.data.in_channels
    mean, std = default_mean_std(in_ch)
    size = cfg.data.image_size
    pre = Preprocessing(size, tuple(mean), tuple(std), in_ch)
    tf_train = train_transform(size, cfg.data.augment, classes.ignore_index, in_ch)
    ds_train = SegDataset(train_samples, classes.num_classes, classes.ignore_index, in_ch, mean, std, tf_train,
                          index.mask_color_channel)
    ds_val = EvalDataset(val_samples, classes.num_classes, classes.ignore_index, in_ch, mean, std,
                         eval_transform(size), index.mask_color_channel)
    nw = cfg.data.num_workers
    device = torch.device(cfg.train.device)
    pin = device.type == "cuda"

    # images are resized to one size, masks stay a list at their own sizes: any val set batches
    val_loader = DataLoader(ds_val, batch_size=bs, shuffle=False, num_workers=nw, collate_fn=eval_collate, pin_memory=pin)

    # ---- model, loss, optimizer
    if cfg.train.threads and device.type == "cpu":
        torch.set_num_threads(cfg.train.threads)
    report = getattr(model, "encoder_report", None)
    if report:
        console.print(f"encoder weights: {report['loaded']}/{report['total']} tensors loaded from {cfg.model.encoder_weights}"
                      + (f", first conv adapted to {in_ch} channels" if report["adapted"] else "")
                      + (f", {len(report['missing'])} left at random init" if report["missing"] else ""))
    model.to(device)
    loss_fn = build_loss(cfg.loss.name, classes.num_classes, classes.ignore_index, cfg.loss.class_weights,
                         cfg.loss.label_smoothing).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp) if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    state = State()
    if resume and (run_dir / "last.pt").exists():
        saved = load_state(run_dir / "last.pt")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if "scaler" in saved:
            scaler.load_state_dict(saved["scaler"])
        state = State(**saved["state"])
        console.print(f"resumed {run_dir} at epoch {state.epoch} (+{state.offset} images), step {state.step}, "
                      f"{state.elapsed / 60:.1f} min spent, best mIoU {max(state.best_miou, 0):.4f}")

    # ---- the run folder's contract, written before the first step so a killed run is still identifiable
    write_text(run_dir / "config.yaml", dump_config(cfg))
    write_json(run_dir / "classes.json", classes.to_dict())
    info = RunInfo(run_dir, cfg.model.name, cfg.model.encoder, classes, pre,
                   read_run(run_dir, need_weights=False).best if resume and is_run(run_dir) else {})
    write_json(run_dir / "recipe.json", {"hardware": {"device": hw.device, "name": hw.name, "cores": hw.cores},
                                         "chosen": [{"key": k, "value": v, "why": w} for k, v, w in chosen],
                                         "class_pixels": {s: r.counts.tolist() for s, r in reports.items()}})
    _print_plan(console, cfg, chosen, hw, model, len(train_samples), len(val_samples), time.time() - t0, bs)

    budget = cfg.train.max_minutes * 60 if cfg.train.max_minutes else math.inf
    steps_per_epoch = len(ds_train) // bs
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

    val_seconds = None            # measured on the first validation
    val_every = 1
    stop_reason = None
    best_cm = None
    bad_steps = 0
    last_save = time.time()
    with _StopFlag() as flag:
        while cfg.train.epochs is None or state.epoch < cfg.train.epochs:
            epoch = state.epoch
            sampler = EpochSampler(len(ds_train), cfg.train.seed, epoch, state.offset)
            ds_train.set_epoch(cfg.train.seed, epoch)
            loader = DataLoader(ds_train, batch_size=bs, sampler=sampler, num_workers=nw, drop_last=True,
                                pin_memory=pin)
            model.train()
            t_epoch, loss_sum, loss_n, lr = time.time(), 0.0, 0, cfg.train.lr
            reserve = val_seconds if val_seconds is not None else 0.0
            tick = time.time()       # wall clock: data loading counts against the budget too
            with _progress_bar(console, len(loader), f"epoch {epoch + 1}") as bar:
                for x, y in loader:
                    lr = set_lr(state.step, state.elapsed)
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        loss = loss_fn(model(x), y)
                    if not torch.isfinite(loss):
                        bad_steps += 1
                        optimizer.zero_grad(set_to_none=True)
                        if bad_steps >= MAX_BAD_STEPS:
                            raise PixelsegError(f"loss was NaN/inf for {bad_steps} steps in a row at step {state.step}; "
                                                f"lower --lr (now {cfg.train.lr:g}) or check the data")
                    else:
                        bad_steps = 0
                        optimizer.zero_grad(set_to_none=True)
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                        loss_sum += float(loss.detach())
                        loss_n += 1
                    state.step += 1
                    state.offset += bs
                    now = time.time()
                    state.elapsed += now - tick
                    bar.advance(loss_sum / max(loss_n, 1), lr, len(x) / max(1e-6, now - tick))
                    tick = now
                    if flag.reason:
                        stop_reason = f"stopped by {flag.reason}"
                    elif state.elapsed + reserve >= budget:
                        stop_reason = f"time budget of {cfg.train.max_minutes:g} min reached"
                    if stop_reason:
                        break
                    if time.time() - last_save > CHECKPOINT_EVERY_S:
                        _save_last(run_dir, model, optimizer, scaler, state)
                        last_save = time.time()
            finished_epoch = stop_reason is None
            if finished_epoch:
                state.epoch += 1
                state.offset = 0
            last_epoch = cfg.train.epochs is not None and state.epoch >= cfg.train.epochs
            row = {"epoch": round(state.epoch + state.offset / max(1, len(ds_train)), 3), "step": state.step,
                   "elapsed_s": round(state.elapsed, 1), "lr": f"{lr:.3g}",
                   "train_loss": round(loss_sum / max(loss_n, 1), 5),
                   "val_mIoU": "", "val_pixel_accuracy": "", "val_mean_dice": ""}
            if stop_reason or last_epoch or state.epoch % val_every == 0:
                t_val = time.time()
                cm = evaluate(model, val_loader, classes.num_classes, classes.ignore_index, device, amp_dtype)
                val_seconds = time.time() - t_val
                state.elapsed += val_seconds
                s = summarize(cm.matrix, classes.names)
                miou = s["mIoU"] if s["mIoU"] is not None else 0.0
                row.update(val_mIoU=round(miou, 5), val_pixel_accuracy=round(s["pixel_accuracy"] or 0, 5),
                           val_mean_dice=round(s["mean_dice"] or 0, 5))
                improved = miou > state.best_miou
                if improved:
                    state.best_miou, state.best_epoch = miou, state.epoch
                    best_cm = cm
                    save_weights(run_dir / "model.safetensors", model)
                    info = replace(info, best={"epoch": row["epoch"], "step": state.step, "mIoU": round(miou, 5)})
                    write_run_info(info)
                epoch_s = time.time() - t_epoch - val_seconds
                if budget < math.inf and epoch_s > 0:   # keep validation to a small share of the budget
                    val_every = max(1, math.ceil(val_seconds / (VAL_SHARE * epoch_s)))
                console.print(f"epoch {row['epoch']:g}  loss {row['train_loss']:.4f}  val mIoU {miou:.4f}"
                              f"{'  [green]best[/]' if improved else ''}  lr {lr:.2g}  "
                              f"{state.elapsed / 60:.1f} min")
            state.history.append(row)
            _write_history(run_dir, state.history)
            _save_last(run_dir, model, optimizer, scaler, state)
            last_save = time.time()
            if stop_reason or last_epoch:
                break

    if flag.reason:
        console.print(f"[yellow]{stop_reason}[/]: state saved; continue with `pixelseg train --out {run_dir} --resume`")
    elif stop_reason:
        console.print(stop_reason)
    # ---- final metrics: the best weights, on the full val split at original resolution
    if best_cm is None:
        from pixelseg.run import load_model
        best = load_model(read_run(run_dir), device)
        best_cm = evaluate(best, val_loader, classes.num_classes, classes.ignore_index, device, amp_dtype)
    summary = summarize(best_cm.matrix, classes.names)
    summary.update(split="val", images=len(val_samples), checkpoint="model.safetensors",
                   epoch=info.best.get("epoch"), train_seconds=round(state.elapsed, 1),
                   wall_seconds=round(time.time() - t_wall, 1), hardware=hw.name, stopped=stop_reason)
    write_json(run_dir / "metrics.json", summary)
    if flag.reason:
        raise KeyboardInterrupt
    return run_dir


def _save_last(run_dir, model, optimizer, scaler, state: State) -> None:
    save_state(run_dir / "last.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                     "scaler": scaler.state_dict(), "state": state.__dict__})


def _print_plan(console, cfg: Config, chosen, hw, model, n_train, n_val, check_s, bs) -> None:
    from rich.table import Table
    t = Table(title="pixelseg train", show_header=True, header_style="bold")
    t.add_column("setting")
    t.add_column("value")
    t.add_column("why")
    auto = {k: (v, w) for k, v, w in chosen}
    h, w = cfg.data.image_size
    rows = [
        ("hardware", hw.name + (f" ({hw.gpu_memory_gb:.0f} GB)" if hw.is_cuda else ""), ""),
        ("data", f"{cfg.data.root}: {n_train} train / {n_val} val images", f"masks checked in {check_s:.1f}s"),
        ("model.name", f"{cfg.model.name} ({count_parameters(model) / 1e6:.1f}M params)", auto.get("model.name", ("", "given"))[1]),
        ("model.encoder", str(cfg.model.encoder), auto.get("model.encoder", ("", "given"))[1]),
        ("data.image_size", f"{h}x{w}", auto.get("data.image_size", ("", "given"))[1]),
        ("train.batch_size", str(bs), auto.get("train.batch_size", ("", "given"))[1]),
        ("train.lr", f"{cfg.train.lr:g} ({cfg.train.schedule}, AdamW)", auto.get("train.lr", ("", "given"))[1]),
        ("budget", (f"{cfg.train.max_minutes:g} min" if cfg.train.max_minutes else "")
         + (" / " if cfg.train.max_minutes and cfg.train.epochs else "")
         + (f"{cfg.train.epochs} epochs" if cfg.train.epochs else ""), auto.get("train.epochs", ("", "given"))[1]),
        ("data.augment", cfg.data.augment, auto.get("data.augment", ("", "given"))[1]),
        ("loss", cfg.loss.name, ""),
        ("train.amp", cfg.train.amp, auto.get("train.amp", ("", ""))[1]),
        ("out", cfg.train.out, ""),
    ]
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
