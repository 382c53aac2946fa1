"""The learning-rate schedule: linear warmup then poly or cosine decay, driven by *progress* = the larger of
the step fraction (with --epochs) and the time fraction (with --max-minutes), so a time-budgeted run still
anneals to a low learning rate exactly when its budget ends."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


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


@dataclass(frozen=True)
class Schedule:
    lr: float                        # the peak learning rate
    name: str                        # "poly" or "cosine"
    total_steps: int | None          # optimizer steps of the whole run (None: the time budget alone decides)
    budget: float                    # seconds (math.inf without --max-minutes)
    warmup_steps: int | None = None  # None: warm up over the first 5% of the progress

    def progress(self, updates: int, elapsed: float) -> float:
        p_steps = updates / self.total_steps if self.total_steps else 0.0
        p_time = elapsed / self.budget if self.budget < math.inf else 0.0
        return min(1.0, max(p_steps, p_time))

    def set_lr(self, optimizer: torch.optim.Optimizer, updates: int, elapsed: float) -> float:
        p = self.progress(updates, elapsed)
        if self.warmup_steps is not None:
            f = min(1.0, (updates + 1) / max(1, self.warmup_steps)) * lr_factor(p, 0.0, self.name)
        else:
            f = lr_factor(p, 0.05, self.name)
        lr = self.lr * f
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr
