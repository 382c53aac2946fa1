"""The learning-rate schedule: linear warmup then poly or cosine decay, driven by *progress* = the larger of
the step fraction (with --epochs) and the time fraction (with --max-minutes), so a time-budgeted run still
anneals to a low learning rate exactly when its budget ends."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pixelseg.models.base import encoder_of


def lr_factor(progress: float, warmup: float, schedule: str) -> float:
    if progress < warmup:
        return (progress + 1e-3) / (warmup + 1e-3)
    p = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    return (1.0 - p) ** 0.9


def param_groups(model: torch.nn.Module, weight_decay: float, encoder_lr_scale: float = 1.0):
    """No weight decay on norms and biases (the usual AdamW practice). With `encoder_lr_scale` < 1 the
    encoder's parameters (smp models: `net.encoder`) learn at that share of the rate, in groups of their own."""
    encoder = encoder_of(model) if encoder_lr_scale != 1.0 else None
    in_encoder = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in in_encoder, p.ndim <= 1), []).append(p)
    out = []
    for enc in (False, True):
        for no_decay in (False, True):
            if (enc, no_decay) in groups or not enc:   # the two decoder groups always exist (stable state layout)
                out.append({"params": groups.get((enc, no_decay), []), "lr_scale": encoder_lr_scale if enc else 1.0,
                            "weight_decay": 0.0 if no_decay else weight_decay})
    return out


def freeze_batchnorm(module: torch.nn.Module | None) -> int:
    """Put every BatchNorm of `module` in eval mode with its affine frozen: the pretrained running statistics
    are used as they are. Call after each `.train()`. Returns how many layers it froze."""
    n = 0
    for m in (module.modules() if module is not None else ()):
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)
            n += 1
    return n


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

    def rate(self, updates: int, elapsed: float) -> float:
        """The peak-relative learning rate times the peak after `updates` steps and `elapsed` seconds."""
        p = self.progress(updates, elapsed)
        if self.warmup_steps is not None:
            f = min(1.0, (updates + 1) / max(1, self.warmup_steps)) * lr_factor(p, 0.0, self.name)
        else:
            f = lr_factor(p, 0.05, self.name)
        return self.lr * f

    def set_lr(self, optimizer: torch.optim.Optimizer, updates: int, elapsed: float) -> float:
        lr = self.rate(updates, elapsed)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr
