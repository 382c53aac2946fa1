"""The training objective the loop calls once per batch: the task loss, plus the auxiliary heads' loss
(deep supervision, where the architecture defines heads) and the distillation term (with a teacher).

Kept out of the trainer so the loop reads `loss = objective(model, x, y)` whatever is switched on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pixelseg.config import Config
from pixelseg.errors import PixelsegError


@dataclass
class Objective:
    loss_fn: nn.Module
    aux_weight: float = 0.0
    teacher: nn.Module | None = None
    kd_weight: float = 0.0
    temperature: float = 1.0
    ignore_index: int = 255
    consistency: object = None     # engine/semi.Consistency when the run learns from unlabelled images

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, unlabelled=None) -> torch.Tensor:
        """`model` may be wrapped (DDP, torch.compile): aux outputs go through its forward. `unlabelled`:
        (strong view, its pseudo-labels, their weights or None), trained in the same forward pass as the labelled batch."""
        n = x.shape[0]
        inputs = x if unlabelled is None else torch.cat([x, unlabelled[0]])
        if self.aux_weight > 0:
            logits, aux = model(inputs, with_aux=True)
        else:
            logits, aux = model(inputs), []
        extra = None
        if unlabelled is not None:
            extra = self.consistency.loss(logits[n:], *unlabelled[1:])
            logits, aux = logits[:n], [a[:n] for a in aux]
        loss = self.loss_fn(logits, y)
        for a in aux:
            loss = loss + self.aux_weight * self.loss_fn(a, y)
        if self.teacher is not None:
            from pixelseg.engine.distill import kd_loss
            loss = loss + self.kd_weight * kd_loss(logits, self.teacher(x), y, self.ignore_index, self.temperature)
        return loss if extra is None else loss + extra

    def describe(self) -> list[str]:
        notes = []
        if self.aux_weight > 0:
            notes.append(f"auxiliary heads weighted {self.aux_weight:g}")
        if self.teacher is not None:
            notes.append(f"distilling from {getattr(self.teacher, 'name', 'teacher')} "
                         f"(pixel-wise KL, T={self.temperature:g}, weight {self.kd_weight:g})")
        if self.consistency is not None:
            under = ("and under them, weighted by how far under (SoftMatch; --no-semi-soft ignores them)"
                     if self.consistency.soft else "the pixels under them ignored (--no-semi-soft)")
            notes.append(f"learning from unlabelled images: pseudo-labels of the weak view above self-adaptive class "
                         f"thresholds, {under}, trained on a strong view (jitter, CutMix), "
                         f"weight {self.consistency.weight:g}")
        return notes


def build_objective(cfg: Config, model: nn.Module, loss_fn: nn.Module, num_classes: int, ignore_index: int,
                    mean, std, device) -> Objective:
    from pixelseg.models import MODELS

    heads = int(getattr(model, "aux_heads", 0))
    published = MODELS.get(cfg.model.name).info.get("aux_weight", 0.0)
    aux_weight = published if cfg.model.aux_weight is None else cfg.model.aux_weight
    if heads == 0 and cfg.model.aux_weight:
        raise PixelsegError(f"model.aux_weight: {cfg.model.name} defines no auxiliary heads; drop --aux-weight "
                            "(pspnet and bisenetv2 have them)")
    teacher = None
    if cfg.model.teacher:
        if cfg.data.binary_sigmoid:
            raise PixelsegError("--teacher: distillation compares softmax distributions; train without --binary-sigmoid")
        from pixelseg.engine.distill import Teacher
        teacher = Teacher(cfg.model.teacher, num_classes, cfg.data.in_channels, mean, std, device)
    return Objective(loss_fn, aux_weight if heads else 0.0, teacher, cfg.model.distill_weight,
                     cfg.model.distill_temperature, ignore_index)
