"""Knowledge distillation: a trained run (the teacher) guides a smaller model (the student) with the
pixel-wise KL divergence between their softened class distributions (Hinton et al. 2015, applied per
pixel as in Liu et al., "Structured Knowledge Distillation for Semantic Segmentation", CVPR 2019):

    loss = task_loss(student, labels) + weight * T^2 * mean over labelled pixels of KL(p_teacher^T || p_student^T)

T^2 keeps the gradient scale independent of the temperature. Pixels with the ignore index carry no
label, but the teacher still has an opinion there; they are left out so "ignore" keeps meaning ignore.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixelseg.errors import PixelsegError


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None,
            ignore_index: int = 255, temperature: float = 1.0) -> torch.Tensor:
    """Pixel-wise KL(teacher || student) at temperature T, times T^2, averaged over labelled pixels."""
    log_p_s = F.log_softmax(student.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher.float() / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)          # N x H x W
    if target is not None:
        valid = target != ignore_index
        kl = kl[valid] if valid.any() else kl.sum() * 0.0
    return kl.mean() * temperature ** 2


class Teacher(nn.Module):
    """A frozen trained run that maps the student's normalized input to logits at the same size.

    The teacher may have been trained with another normalization (another encoder's mean/std) or input
    size: the input is renormalized to the teacher's statistics and resized to the teacher's training size
    (objects at the scale it learned; its logits are resized back to the student's grid), as predict does.
    """

    def __init__(self, run: str | Path, num_classes: int, in_channels: int, mean, std, device):
        super().__init__()
        from pixelseg.run.folder import RunFolder

        if not RunFolder(run).is_run():
            raise PixelsegError(f"{run}: --teacher takes a pixelseg run folder (with model.json and model.safetensors)")
        info = RunFolder(run).info()
        if info.classes.num_classes != num_classes:
            raise PixelsegError(f"{run}: the teacher predicts {info.classes.num_classes} classes, this dataset has "
                                f"{num_classes}; distill from a run trained on the same class table")
        if info.preprocessing.in_channels != in_channels:
            raise PixelsegError(f"{run}: the teacher takes {info.preprocessing.in_channels}-channel images, the student "
                                f"{in_channels}; distill from a run trained on the same kind of images")
        self.name = info.model
        self.model = info.load_model(device).eval().requires_grad_(False)
        t_mean, t_std = info.preprocessing.mean, info.preprocessing.std
        as_t = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        # x_teacher = (x_student * std_s + mean_s - mean_t) / std_t, an affine map per channel
        self.register_buffer("scale", as_t(std) / as_t(t_std))
        self.register_buffer("shift", (as_t(mean) - as_t(t_mean)) / as_t(t_std))
        self.size = tuple(info.preprocessing.image_size)

    def train(self, mode: bool = True):      # always eval: BatchNorm statistics and dropout stay frozen
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale + self.shift
        size = tuple(x.shape[-2:])
        if size == self.size:
            return self.model(x)
        logits = self.model(F.interpolate(x, size=self.size, mode="bilinear", align_corners=False))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
