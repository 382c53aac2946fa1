"""The training loop, read top to bottom: `train` sets up, `train_one_epoch` steps, `validate_and_keep_best`
scores and keeps the best weights; the run folder (pixelseg.run.folder) receives everything.

    train(cfg)  ->  recipe.resolve (config.yaml is final)  ->  setup (data, model, optimizer, run folder)
                ->  per epoch: train_one_epoch, validate_and_keep_best, save last.pt  ->  finish (metrics.json)

Scale: under `torchrun --nproc-per-node N -m pixelseg train ...` every rank runs this same function
(engine/distributed.py): DistributedDataParallel, each global batch of `train.batch_size` split
evenly over the ranks (so a run gives the same batches on 1 or N processes), validation sharded and
its confusion matrix all-reduced, rank 0 alone writing the run folder and showing progress.

Faults (engine/guards.py, engine/state.py): the resumable state is saved atomically and durably at every
epoch end, every `train.checkpoint_minutes` and on SIGTERM/SIGINT, so a kill -9 at any moment loses at most
that interval; a non-finite loss stops the run before anything broken is saved.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console

from pixelseg.config import Config
from pixelseg import torchrun
from pixelseg.data.formats import open_dataset
from pixelseg.data.prefetch import prefetched
from pixelseg.data.sampling import epoch_order
from pixelseg.engine import distributed as ddp
from pixelseg.engine import guards, setup
from pixelseg.engine.console import RunProgress, print_plan
from pixelseg.engine.environment import environment
from pixelseg.engine.recipe import detect_hardware, preprocessing, resolve
from pixelseg.engine.semi import history_fields as semi_history
from pixelseg.engine.schedule import Schedule, freeze_batchnorm
from pixelseg.engine.state import State, restore, save_last, seed_everything
from pixelseg.engine.verdict import verdict
from pixelseg.errors import PixelsegError
from pixelseg.measure.evaluation import confusion_matrix, eval_window, summarize_with_ci
from pixelseg.measure.metrics import ConfusionMatrix, summarize
from pixelseg.models import model_mean_std
from pixelseg.models.base import encoder_of
from pixelseg.run.folder import RunFolder, RunInfo
from pixelseg.engine.tracking import Tracker, open_tracker, per_class_iou

VAL_SHARE = 0.10                  # validation may take at most this share of a time-budgeted run


@dataclass
class Stop:
    reason: str
    signalled: bool = False       # by SIGTERM/SIGINT: the caller ends with KeyboardInterrupt (exit 130)


class Checkpointer:
    """last.pt on rank 0, at epoch ends and every `minutes` in between."""

    def __init__(self, run: RunFolder, t: setup.Trainee, state: State, d, minutes: float):
        self.run, self.t, self.state, self.d, self.every = run, t, state, d, minutes * 60
        self.best_cm: ConfusionMatrix | None = None
        self.last = time.time()

    def save(self) -> None:
        if self.d.is_main:
            save_last(self.run, self.t.model, self.t.optimizer, self.t.scaler, self.t.ema, self.state, self.best_cm)
        self.last = time.time()

    def maybe_save(self) -> None:
        if time.time() - self.last >= self.every:
            self.save()


def train(cfg: Config, resume: bool = False, console: Console | None = None, quiet: bool = False,
          on_step=None) -> Path:
    """Train per `cfg`; returns the run folder. With resume, continues cfg.train.out from its last state.
    `on_step(state)` is called after every training step (tests use it to interrupt a run at a known step).
    Under torchrun, call it on every rank (the CLI does)."""
    rank, _, _ = torchrun.world()
    console = console or Console(stderr=True, quiet=quiet or rank != 0)
    t_wall = time.time()
    setup.check_names(cfg)
    index = open_dataset(cfg.data.root, cfg.data.format, cfg.data.val_fraction)
    hw = detect_hardware(cfg.train.device)
    d, device_name = ddp.setup(hw.device if cfg.train.device == "auto" else cfg.train.device)
    state, run = State(), None
    try:
        cfg, chosen, run, data_info = _resolve(cfg, index, hw, d, resume)
        return _train(cfg, chosen, run, data_info, index, hw, d, torch.device(device_name), resume, console, state,
                      on_step, t_wall)
    except Exception as e:
        if d.enabled and guards.is_peer_failure(e):
            raise PixelsegError(ddp.lost_peer_message(d, e, run.path if run else None, state.step)) from None
        raise
    finally:
        ddp.teardown(d)


def _resolve(cfg: Config, index, hw, d, resume: bool):
    """The final config, before anything is built from it; the masks are read once on rank 0 on the way."""
    if cfg.train.out:       # a wrong --out fails in a second, before the masks are read
        ddp.main_first(d, RunFolder(cfg.train.out).prepare, resume)
    data_info = ddp.main_first(d, setup.check_data, index, cfg)
    stamp = ddp.broadcast(d, datetime.now().strftime("%Y%m%d-%H%M%S"))     # the default run folder is rank 0's
    given_root = cfg.data.root
    cfg, chosen = resolve(cfg, index, hw, d.world, stamp, data_info["class_weights"])
    data_info["data_root_given"] = str(given_root)
    return cfg, chosen, RunFolder(cfg.train.out), data_info


def _train(cfg: Config, chosen, run: RunFolder, data_info: dict, index, hw, d, device: torch.device, resume: bool,
           console: Console, state: State, on_step, t_wall: float) -> Path:
    t0 = time.time()
    classes = index.classes
    seed_everything(cfg.train.seed)
    model = setup.new_model(cfg, classes, resume, console)
    for note in index.notes:
        console.print(f"[yellow]note:[/] {note}")
    ddp.main_first(d, _prepare, run, resume, setup.checkpoint_bytes(model, cfg.train.ema is not None))
    if device.type == "cpu" and cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    mean, std = model_mean_std(model, cfg.data.in_channels)   # the encoder's pretraining statistics when declared
    data = setup.build_data(cfg, index, mean, std, data_info["factors"], d, device)
    t = setup.build_trainee(cfg, model, classes, mean, std, d, device, console)
    ckpt = Checkpointer(run, t, state, d, cfg.train.checkpoint_minutes)
    if resume:
        ckpt.best_cm = _resume(run, t, state, classes, d, device, console)
    setup.wrap_for_training(t, cfg, d, device)
    # the run folder's contract, written before the first step so a killed run is still identifiable
    before = run.info(need_weights=False) if resume and d.is_main and run.is_run() else None
    saved = run.config() if resume and run.config_path.is_file() else None      # before config.yaml is rewritten
    pre = before.preprocessing if before else preprocessing(cfg.data, mean, std, index.splits["train"])
    threshold = (before.sigmoid_threshold if before else 0.5) if cfg.data.binary_sigmoid else None   # kept if tuned
    # a resumed run builds its model without the encoder weights (the checkpoint has them): the first session's
    # provenance is kept, as is a calibrated temperature
    provenance = before.pretrained if before else getattr(model, "weights_provenance", None)
    info = RunInfo(run.path, cfg.model.name, cfg.model.encoder, classes, pre, before.best if before else {}, threshold,
                   temperature=before.temperature if before else 1.0, pretrained=provenance)
    if d.is_main:
        _write_run_files(run, cfg, chosen, hw, d, classes, data_info, resume, provenance)
        run.write_info(info)
    print_plan(console, cfg, chosen, hw, t.model, (len(data.train.samples), len(data.train)), len(data.val),
               time.time() - t0, d, data_info["data_root_given"])
    budget = cfg.train.max_minutes * 60 if cfg.train.max_minutes else math.inf
    if resume and ddp.main_first(d, _budget_spent, cfg, state, budget, run):
        console.print(f"{run.path}: its budget is spent ({_spent(cfg, state)}); nothing to continue. To train "
                      "longer, resume with a larger --epochs or --max-minutes")
        return run.path
    expected_epoch = float(data.factors.sum()) if data.factors is not None else float(len(data.train))
    steps_per_epoch = max(1, math.ceil((int(expected_epoch) // cfg.train.batch_size) / cfg.train.accumulate))
    def schedule_for(train) -> Schedule:
        return Schedule(cfg.train.lr, cfg.train.schedule, train.epochs * steps_per_epoch if train.epochs else None,
                        train.max_minutes * 60 if train.max_minutes else math.inf, cfg.train.warmup_steps)
    schedule = schedule_for(cfg.train)
    if saved is not None and (saved.train.epochs, saved.train.max_minutes) != (cfg.train.epochs, cfg.train.max_minutes):
        console.print(f"[yellow]note:[/] the budget changed ({_budget_text(saved.train)} -> {_budget_text(cfg.train)}): "
                      f"the schedule is stretched to the new end, so the learning rate goes from "
                      f"{schedule_for(saved.train).rate(state.updates, state.elapsed):.2g} (where it was) to "
                      f"{schedule.rate(state.updates, state.elapsed):.2g} and decays again")
    stream = None
    if data.unlabelled is not None:       # images without masks: their own endless stream (engine/semi.py)
        from pixelseg.engine.semi import UnlabelledStream, initial_state
        if state.semi is None:
            state.semi = initial_state(classes.num_classes)
        stream = UnlabelledStream(data.unlabelled, data.unlabelled_batch, cfg.train.seed, state, d,
                                  cfg.data.num_workers, data.pin)
    # rank 0 logs; a resumed run continues its tracked run (tracking.py); the config is logged as params
    with (open_tracker(cfg.train.logger, run.path, cfg.to_dict()) if d.is_main else Tracker()) as tracker:
        stop, info = _loop(cfg, d, data, t, state, schedule, ckpt, info, console, on_step, tracker, stream)
    if stop is not None:
        console.print(f"[yellow]{stop.reason}[/]: state saved; continue with `pixelseg train --out {run.path} --resume`"
                      if stop.signalled else stop.reason)
    semi_counts = None
    if state.semi is not None:        # what every rank drew from the unlabelled images, for the report
        k = classes.num_classes
        tot = ddp.agree(d, [*state.semi["used"], state.semi["seen"], state.semi["images"]], op="sum")
        semi_counts = dict(state.semi, used=[int(v) for v in tot[:k]], seen=int(tot[k]), images=int(tot[k + 1]))
    if d.is_main:
        _finish(run, info, data, ckpt.best_cm, state, classes, hw, d, device, t.amp_dtype, stop, t_wall,
                budget < math.inf, console, semi_counts)
    ddp.agree(d, [0.0])      # the other ranks return once the run folder is complete
    if stop is not None and stop.signalled:
        raise KeyboardInterrupt
    return run.path


def _prepare(run: RunFolder, resume: bool, need_bytes: int) -> None:
    run.prepare(resume)
    run.check_space(need_bytes)


def _resume(run: RunFolder, t: setup.Trainee, state: State, classes, d, device, console) -> ConfusionMatrix | None:
    if not ddp.main_first(d, run.has_state):
        console.print(f"{run.path}: no training state saved yet (stopped before its first checkpoint): starting from "
                      "step 0 with its saved config")
        return None
    saved = ddp.main_first(d, run.load_state)
    best_cm = restore(saved, t.model, t.optimizer, t.scaler, t.ema, state, classes.num_classes, classes.ignore_index,
                      device)
    console.print(f"resumed {run.path} at epoch {state.epoch} (+{state.offset} images), step {state.step}, "
                  f"{state.elapsed / 60:.1f} min spent, best mIoU {max(state.best_miou, 0):.4f}")
    return best_cm


def _write_run_files(run: RunFolder, cfg: Config, chosen, hw, d, classes, data_info: dict, resume: bool,
                     provenance: dict | None) -> None:
    run.write_config(cfg)
    run.write_classes(classes)
    if not (resume and run.recipe()):      # a resume keeps the first session's reasons (it chooses nothing new)
        run.write_recipe({"hardware": {"device": hw.device, "name": hw.name, "cores": hw.cores},
                          "data_root": data_info["data_root_given"],
                          "chosen": [{"key": k, "value": v, "why": w} for k, v, w in chosen],
                          "pretrained": provenance,
                          "class_pixels": data_info["class_pixels"],
                          **({"repeat_factors": data_info["factors"]} if data_info["factors"] is not None else {})})
    run.record_environment(environment(cfg.train.seed, hw, d))


def _budget_text(train) -> str:
    return " and ".join(([f"{train.epochs} epochs"] if train.epochs else [])
                        + ([f"{train.max_minutes:g} min"] if train.max_minutes else [])) or "no limit"


def _budget_spent(cfg: Config, state: State, budget: float, run: RunFolder) -> bool:
    """A finished run (metrics.json written) whose epochs or minutes are all used: nothing left to train."""
    metrics = run.metrics()
    if metrics is None:       # stopped before its final evaluation: resuming finishes it
        return False
    # a time-budgeted run stops a validation's length before its budget: the same budget is spent
    timed_out = cfg.train.max_minutes and metrics.get("stopped") == f"time budget of {cfg.train.max_minutes:g} min reached"
    return (cfg.train.epochs is not None and state.epoch >= cfg.train.epochs) or state.elapsed >= budget or bool(timed_out)


def _spent(cfg: Config, state: State) -> str:
    parts = [f"{state.epoch} of {cfg.train.epochs} epochs"] if cfg.train.epochs is not None else []
    if cfg.train.max_minutes:
        parts.append(f"{state.elapsed / 60:.1f} of {cfg.train.max_minutes:g} min")
    return ", ".join(parts)


# ---------------------------------------------------------------- the loop

def _loop(cfg: Config, d, data: setup.Data, t: setup.Trainee, state: State, schedule: Schedule, ckpt: Checkpointer,
          info: RunInfo, console: Console, on_step, tracker: Tracker, stream=None) -> tuple[Stop | None, RunInfo]:
    tc, classes = cfg.train, info.classes
    val_every, val_seconds, stop = 1, None, None
    between_steps = lambda: (state.offset // tc.batch_size) % tc.accumulate == 0    # noqa: E731 (no half-accumulated gradient)
    with guards.StopFlag() as flag, guards.save_on_lost_peer(d, ckpt.save, between_steps), RunProgress(console) as bar:
        while tc.epochs is None or state.epoch < tc.epochs:
            t_epoch = time.time()
            order = epoch_order(len(data.train), tc.seed, state.epoch, data.factors)
            loader = data.train_loader(order, state.offset, d, tc.seed, state.epoch, cfg.data.num_workers)
            reserve = val_seconds or 0.0          # room left for the validation that ends a time-budgeted run
            stop, loss, lr = train_one_epoch(t, loader, state, schedule, tc, d, len(order) // tc.batch_size, reserve,
                                             flag, ckpt, bar, on_step, tracker, stream)
            if stop is None:
                state.epoch, state.offset = state.epoch + 1, 0
            last_epoch = tc.epochs is not None and state.epoch >= tc.epochs
            row = {"epoch": round(state.epoch + state.offset / max(1, len(order)), 3), "step": state.step,
                   "elapsed_s": round(state.elapsed, 1), "lr": f"{lr:.3g}", "train_loss": round(loss, 5),
                   "val_mIoU": "", "val_pixel_accuracy": "", "val_mean_dice": "", "data_wait": round(state.share_waiting(), 4),
                   **semi_history(state.semi)}
            per_class = {}       # iou/<class> for the trackers (metrics.csv keeps its fixed columns)
            if stop or last_epoch or state.epoch % val_every == 0:
                cm, info, val_seconds, summary = validate_and_keep_best(t.eval_model, data.val_loader, classes,
                                                                        t.amp_dtype, state, ckpt.run, info, d, row)
                per_class = per_class_iou(summary)
                ckpt.best_cm = cm or ckpt.best_cm
                epoch_s = time.time() - t_epoch - val_seconds
                if schedule.budget < math.inf and epoch_s > 0:   # keep validation to a small share of the budget
                    val_every = max(1, math.ceil(val_seconds / (VAL_SHARE * epoch_s)))
                val_every = int(ddp.agree(d, [val_every])[0])   # rank 0's clock is not the others'
                _log_validation(console, bar, row, state, cm is not None, lr)
            tracker.log_epoch(state.step, {**row, **per_class})
            state.history.append(row)
            if d.is_main:
                ckpt.run.write_history(state.history)
            ckpt.save()
            if stop or last_epoch:
                break
    return stop, info


def train_one_epoch(t: setup.Trainee, loader, state: State, schedule: Schedule, tc, d, epoch_batches: int,
                    reserve: float, flag: guards.StopFlag, ckpt: Checkpointer, bar: RunProgress, on_step,
                    tracker: Tracker, stream=None) -> tuple[Stop | None, float, float]:
    """Steps over this epoch's (remaining) batches until it ends or a stop is agreed on by every rank: a
    signal, or the time budget (`reserve` seconds kept for the final validation). Returns (stop, mean loss, lr)."""
    t.wrapped.train()
    if tc.encoder_bn == "frozen":
        freeze_batchnorm(encoder_of(t.model))
    bs, acc = tc.batch_size, tc.accumulate
    loss_sum, loss_n, lr, stop = 0.0, 0, tc.lr, None
    tick = time.time()       # wall clock: data loading counts against the budget too
    with prefetched(loader) as batches:     # the next batches decode while this one trains
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
            lr = schedule.set_lr(t.optimizer, state.updates, state.elapsed)
            u = stream.next() if stream is not None and _semi_started(state, schedule, tc, d) else None
            loss_value = train_step(t, x, y, boundary, window, tc, d, state, ckpt.run, u)
            loss_sum, loss_n = loss_sum + loss_value, loss_n + 1
            state.step += 1
            state.offset += bs
            now = time.time()
            state.elapsed += now - tick
            bar.update(schedule.progress(state.updates, state.elapsed), state.epoch + 1, loss_sum / loss_n, lr,
                       now - tick, bs)
            tick = now
            tracker.log_step(state.step, loss_value, lr)
            if on_step is not None:
                on_step(state)
            stop = stop or _agree_on_stop(d, flag, state, reserve, schedule.budget, tc.max_minutes)
            if not boundary:          # the accumulated gradients live only in memory: no stop, no save
                continue
            if stop:
                break
            ckpt.maybe_save()
    if d.enabled:   # the logged loss is the global batch's, not rank 0's share
        loss_sum = ddp.agree(d, [loss_sum], op="sum")[0] / d.world
    return stop, loss_sum / max(loss_n, 1), lr


def train_step(t: setup.Trainee, x, y, boundary: bool, window: int, tc, d, state: State, run: RunFolder,
               u=None) -> float:
    """Forward and backward of one batch; on the last batch of an accumulation window, the optimizer step.
    `u`: a batch of unlabelled images and their padding mask (engine/semi.py), learned from alongside."""
    device = next(t.model.parameters()).device
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if tc.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    unlabelled = None
    if u is not None:
        cons = t.objective.consistency
        xw, pad = u[0].to(device, non_blocking=True), u[1].to(device, non_blocking=True)
        if tc.channels_last:
            xw = xw.contiguous(memory_format=torch.channels_last)
        truth = u[2].to(device) if u[2] is not None else None
        pseudo, weights = cons.pseudo_labels(t.teacher, xw, pad, state.semi, t.amp_dtype, truth)
        # the strong view's randomness: this step of this rank alone, so a resume repeats it
        unlabelled = cons.strong(xw, pseudo, tc.seed * 1_000_003 + state.step * 64 + (d.rank if d.enabled else 0),
                                 weights)
    rank = d.rank if d.enabled else None
    sync = contextlib.nullcontext() if boundary or not d.enabled else t.wrapped.no_sync()
    with sync:
        with torch.autocast(device.type, dtype=t.amp_dtype, enabled=t.amp_dtype is not None):
            loss = t.objective(t.forward, x, y, unlabelled)    # task loss (+ aux heads, distillation, unlabelled)
        loss_value = float(loss.detach())
        # before the backward: a NaN on one rank must stop every rank, not reach the all-reduce
        bad, = ddp.agree(d, [float(not math.isfinite(loss_value))])
        if bad:
            guards.non_finite(f"loss is {loss_value}" if not math.isfinite(loss_value) else "loss is NaN/inf on another rank",
                              state.step, state.epoch, run.state_path, tc.lr, rank)
        t.scaler.scale(loss / window).backward()
    if boundary:
        if tc.clip_grad is not None:
            t.scaler.unscale_(t.optimizer)
            norm = torch.nn.utils.clip_grad_norm_([p for p in t.model.parameters() if p.requires_grad], tc.clip_grad)
            # with a loss scaler, inf gradients are routine (the step is skipped and the scale lowered);
            # without one they would poison the weights
            if not t.scaler.is_enabled() and not torch.isfinite(norm):
                guards.non_finite(f"gradient norm is {float(norm)}", state.step, state.epoch, run.state_path, tc.lr, rank)
        t.scaler.step(t.optimizer)
        t.scaler.update()
        t.optimizer.zero_grad(set_to_none=True)
        if t.ema is not None:
            t.ema.update_parameters(t.model)
        state.updates += 1
    return loss_value


def _semi_started(state: State, schedule: Schedule, tc, d) -> bool:
    """Whether this step learns from the unlabelled images too: once the run's progress (budget or epochs) reaches
    `train.semi_start`, agreed by every rank, and from then on (the step it began is part of the state)."""
    sem = state.semi
    if sem.get("start_step") is None:
        if sem["images"]:            # a state saved before the start was recorded: it had begun
            sem["start_step"] = 0
            return True
        go = schedule.progress(state.updates, state.elapsed) >= (tc.semi_start or 0.0)
        if not ddp.agree(d, [float(go)])[0]:
            return False
        sem["start_step"] = state.step
    return True


def _agree_on_stop(d, flag: guards.StopFlag, state: State, reserve: float, budget: float, max_minutes) -> Stop | None:
    stop_sig, stop_time = ddp.agree(d, [float(flag.reason is not None), float(state.elapsed + reserve >= budget)])
    if stop_sig:
        return Stop(f"stopped by {flag.reason or 'a signal to another rank'}", signalled=True)
    if stop_time:
        return Stop(f"time budget of {max_minutes:g} min reached")
    return None


def validate_and_keep_best(model, loader, classes, amp_dtype, state: State, run: RunFolder, info: RunInfo, d,
                           row: dict) -> tuple[ConfusionMatrix | None, RunInfo, float, dict]:
    """The val split scored at each mask's original resolution (each rank its share, the matrices summed);
    a new best mIoU keeps its weights in model.safetensors and model.json. Fills `row`'s val columns.
    Returns (the matrix when it is the new best else None, the run info, seconds taken, metrics.summarize's dict)."""
    t0 = time.time()
    device = next(model.parameters()).device
    cm = confusion_matrix(model, loader, classes.num_classes, classes.ignore_index, device, amp_dtype, per_image=True,
                          window=eval_window(info.preprocessing))
    cm.all_reduce()
    seconds = time.time() - t0
    state.elapsed += seconds
    state.val_time += seconds
    s = summarize(cm.matrix, classes.names)
    miou = s["mIoU"] if s["mIoU"] is not None else 0.0
    row.update(val_mIoU=round(miou, 5), val_pixel_accuracy=round(s["pixel_accuracy"] or 0, 5),
               val_mean_dice=round(s["mean_dice"] or 0, 5))
    if not miou > state.best_miou:       # the same on every rank: the matrix is global
        return None, info, seconds, s
    state.best_miou, state.best_epoch = miou, state.epoch
    if d.is_main:
        guards.check_finite_weights(model, run.state_path, state.step)
        run.save_weights(model)
        info = replace(info, best={"epoch": row["epoch"], "step": state.step, "mIoU": round(miou, 5)})
        run.write_info(info)
    return cm, info, seconds, s


def _log_validation(console: Console, bar: RunProgress, row: dict, state: State, improved: bool, lr: float):
    bar.validated(row["val_mIoU"])
    semi = ""
    if state.semi and state.semi["seen"]:     # this rank's share of the unlabelled pixels learned from so far
        semi = f"  unlabelled px used {sum(state.semi['used']) / state.semi['seen']:.0%}"
    console.print(f"epoch {row['epoch']:g}  loss {row['train_loss']:.4f}  val mIoU {row['val_mIoU']:.4f}"
                  f"{'  [green]best[/]' if improved else ''}  lr {lr:.2g}  {state.elapsed / 60:.1f} min{semi}")


def _finish(run: RunFolder, info: RunInfo, data: setup.Data, best_cm, state: State, classes, hw, d, device,
            amp_dtype, stop: Stop | None, t_wall: float, budgeted: bool, console: Console,
            semi_counts: dict | None = None) -> None:
    """metrics.json (rank 0): the best weights, on the full val split at original resolution."""
    # resumed, and no better epoch since: last.pt keeps the best total matrix only (per-image matrices would
    # weigh N x K x K), so the best weights score the val split once more, for the intervals
    if best_cm is None or not best_cm.keep_per_image:
        from pixelseg.measure.evaluation import split_loader
        loader = split_loader(data.val.samples, classes, info.preprocessing, data.val.color_channel, data.local_batch)
        best_cm = confusion_matrix(run.load_model(device), loader, classes.num_classes, classes.ignore_index, device,
                                   amp_dtype, per_image=True, window=eval_window(info.preprocessing))
    summary = summarize_with_ci(best_cm, classes.names)   # intervals when best_cm holds every val image's matrix
    train_s = max(state.elapsed - state.val_time, 1e-9)
    summary.update(split="val", images=len(data.val), checkpoint=run.WEIGHTS, epoch=info.best.get("epoch"),
                   train_seconds=round(state.elapsed, 1), wall_seconds=round(time.time() - t_wall, 1), hardware=hw.name,
                   processes=d.world, data_wait=round(state.share_waiting(), 4),
                   images_per_s=round(state.step * data.local_batch * d.world / train_s, 2),
                   stopped=stop.reason if stop else None)
    from pixelseg.engine.semi import summary as semi_summary
    unl = semi_summary(semi_counts, classes.names)
    if unl is not None:
        summary["unlabelled"] = unl
        console.print(f"unlabelled: {unl['images_drawn']} images drawn, {unl['used_share']:.1%} of their pixels above "
                      "their class threshold and learned from")
    summary["verdict"] = verdict(best_cm.matrix, classes.names, state.updates, state.history, budgeted)
    for line in summary["verdict"]:
        console.print(f"[yellow]warning:[/] {line}")
    run.write_metrics(summary)

