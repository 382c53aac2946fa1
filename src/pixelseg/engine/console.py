"""What training shows: the plan (every setting and why it was chosen) and one progress bar for the run."""
from __future__ import annotations

from rich.console import Console

from pixelseg.models import count_parameters


def print_plan(console: Console, cfg, chosen, hw, model, n_train: tuple[int, int], n_val: int, check_s: float, d,
               data_given: str | None = None) -> None:
    from rich.table import Table
    t = Table(title="pixelseg train", show_header=True, header_style="bold")
    for col in ("setting", "value", "why"):
        t.add_column(col)
    auto = {k: w for k, _, w in chosen}
    why = lambda key, default="given": auto.get(key, default)   # noqa: E731
    h, w = cfg.data.image_size
    tr = cfg.train
    bs = tr.batch_size
    rows = [
        ("hardware", hw.name + (f" ({hw.gpu_memory_gb:.0f} GB)" if hw.is_cuda else ""), ""),
        ("data", f"{data_given or cfg.data.root}: {n_train[0]} train / {n_val} val images"
         + (f" ({n_train[1]} crops an epoch)" if n_train[1] != n_train[0] else ""), f"masks checked in {check_s:.1f}s"),
        ("model.name", f"{cfg.model.name} ({count_parameters(model) / 1e6:.1f}M params)", why("model.name")),
        ("model.encoder", str(cfg.model.encoder), why("model.encoder")),
        ("data.image_size", f"{h}x{w}", why("data.image_size")),
        *([("data.scale", f"{cfg.data.scale:g}", why("data.scale")),
           ("data.crop", f"{cfg.data.crop[0]}x{cfg.data.crop[1]}" if cfg.data.crop else "whole image", why("data.crop"))]
          if cfg.data.scale else []),
        ("train.batch_size", str(bs) + (f" ({bs // d.world} per rank)" if d.enabled else ""), why("train.batch_size")),
        ("train.lr", f"{tr.lr:g} ({tr.schedule}, AdamW)", why("train.lr")),
        ("budget", (f"{tr.max_minutes:g} min" if tr.max_minutes else "") + (" / " if tr.max_minutes and tr.epochs else "")
         + (f"{tr.epochs} epochs" if tr.epochs else ""), why("train.epochs")),
        ("data.augment", cfg.data.augment, why("data.augment")),
        ("loss", cfg.loss.name, ""),
        ("train.amp", tr.amp, why("train.amp", "")),
        ("out", tr.out, ""),
    ]
    if cfg.model.encoder is None:     # an architecture without an encoder choice (lraspp, fast_scnn, ...)
        rows = [r for r in rows if r[0] != "model.encoder"]
    if d.enabled:
        rows.insert(1, ("distributed", f"{d.world} processes ({d.backend})" + (", SyncBatchNorm" if tr.sync_bn else ""),
                        "torchrun"))
    if "loss.class_weights" in auto:
        rows.append(("loss.class_weights", ", ".join(f"{v:.3g}" for v in cfg.loss.class_weights), auto["loss.class_weights"]))
    extras = [f"accumulate {tr.accumulate}" if tr.accumulate > 1 else "", f"clip {tr.clip_grad:g}" if tr.clip_grad else "",
              f"EMA {tr.ema:g}" if tr.ema else "", "channels_last" if tr.channels_last else "",
              "torch.compile" if tr.compile else "", "repeat-factor sampling" if tr.sampling == "repeat" else "",
              f"logger {tr.logger}" if tr.logger != "csv" else ""]
    if any(extras):
        rows.append(("options", ", ".join(e for e in extras if e), ""))
    for r in rows:
        t.add_row(*r)
    console.print(t)


class RunProgress:
    """One bar for the whole run on a terminal (silent in logs and CI): the share of the budget spent (the
    larger of the step and the time fraction, as the schedule sees it), so its ETA does not restart every
    epoch; with loss, lr, steps/s, img/s and the last validation mIoU."""

    def __init__(self, console: Console, title: str = "training"):
        self.console, self.title = console, title
        self.progress = None
        self.task = None
        self.step_s = None        # seconds a step, smoothed: one slow step (a checkpoint) should not swing the speed

    def __enter__(self):
        if self.console.is_terminal and not self.console.quiet:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2g}  {task.fields[sps]:.2f} steps/s  "
                           "{task.fields[ips]:.1f} img/s  val mIoU {task.fields[miou]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.title, total=1000, epoch=1, loss=0.0, lr=0.0, sps=0.0, ips=0.0,
                                               miou="—")
        return self

    def update(self, fraction: float, epoch: int, loss: float, lr: float, step_seconds: float, batch: int) -> None:
        if self.progress:
            self.step_s = step_seconds if self.step_s is None else 0.9 * self.step_s + 0.1 * step_seconds
            sps = 1.0 / max(self.step_s, 1e-6)
            self.progress.update(self.task, completed=round(1000 * fraction), epoch=epoch, loss=loss, lr=lr,
                                 sps=sps, ips=sps * batch)

    def validated(self, miou: float) -> None:
        if self.progress:
            self.progress.update(self.task, miou=f"{miou:.4f}")

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()
