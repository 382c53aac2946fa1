"""What every model's output goes through, whatever runs it: logits brought back to the image's pixels,
a one-channel (sigmoid) model seen as a two-class one, labels and per-pixel confidence from logits. Used by training, inference and export alike,
so it lives with the models, below all of them.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from pixelseg.errors import PixelsegError


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N x K x h x w -> N x K x H x W, the one way logits are brought back to an image's pixels."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class TwoClassLogits(torch.nn.Module):
    """A one-channel (sigmoid) model seen as a 2-class one: logits [logit(threshold), x]. Softmax of them is
    exactly [1 - sigmoid(x), sigmoid(x)] at threshold 0.5, and their argmax is class 1 where
    sigmoid(x) > threshold, so prediction, TTA, tiling, export and serving need no sigmoid branch."""

    def __init__(self, model: torch.nn.Module, threshold: float = 0.5):
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise PixelsegError(f"threshold {threshold} must be between 0 and 1 (exclusive)")
        self.model, self.threshold = model, float(threshold)
        self.offset = math.log(threshold / (1.0 - threshold))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = self.model(x)
        return torch.cat([torch.full_like(fg, self.offset), fg], 1)


def argmax(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """scores.argmax(dim), 3-5x faster on the CPU for the class dimension of N x K x H x W / K x H x W
    scores: torch's argmax over a non-innermost dimension takes a slow strided path (147 ms for 19 x 512
    x 1024 on 2 cores) that max(dim) does not (30 ms). Same answer, ties included: both return the first
    maximal index."""
    return scores.max(dim).indices


def labels_from_logits(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """N x K x H x W logits -> N x H x W class indices: the argmax over K >= 2 channels; with one channel
    (a binary_sigmoid model) class 1 where sigmoid(logit) > threshold. Comparing the logit with
    logit(threshold) gives the same answer without computing the sigmoid of every pixel."""
    if logits.dim() != 4:
        raise ValueError(f"expected logits N x K x H x W, got {tuple(logits.shape)}")
    if logits.shape[1] > 1:
        return argmax(logits, 1)
    if not 0.0 < threshold < 1.0:
        raise PixelsegError(f"threshold {threshold} must be between 0 and 1 (exclusive)")
    return (logits[:, 0] > math.log(threshold / (1.0 - threshold))).long()


# ------------------------------------------------------------------------ per-pixel confidence
# Confidence of a pixel = its largest class probability (softmax over K >= 2 channels; with one sigmoid channel,
# max(p, 1 - p)). Entropy is normalized by log K (log 2 for one channel), so both maps lie in [0, 1]: 1 = sure
# (confidence) or 1 = as unsure as a uniform guess (entropy).

def as_tensor(x, what: str) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)), True
    if isinstance(x, torch.Tensor):
        return x, False
    raise PixelsegError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__}")


def class_dim(x: torch.Tensor, what: str) -> int:
    if x.dim() not in (3, 4):
        raise PixelsegError(f"{what} must be K x H x W or N x K x H x W, got shape {tuple(x.shape)}")
    return x.dim() - 3


def confidence_maps(scores, probs: bool = False, temperature: float = 1.0):
    """(max probability, normalized entropy) per pixel of logits (or probabilities with ``probs=True``)
    shaped N x K x H x W or K x H x W; both maps N x H x W (or H x W), float32 in [0, 1]. Numpy in,
    numpy out. ``temperature`` divides the logits first (see fit_temperature)."""
    x, was_numpy = as_tensor(scores, "scores")
    dim = class_dim(x, "scores")
    x = x.float()
    k = x.shape[dim]
    if probs:
        p = x.clamp(0.0, 1.0)
        if k == 1:
            p = torch.cat([1.0 - p, p], dim)
        logp = torch.log(p.clamp_min(1e-12))
    else:
        x = x / float(temperature)
        if k == 1:                               # one sigmoid channel: the classes are (not x, x)
            x = torch.cat([torch.zeros_like(x), x], dim)
        logp = torch.log_softmax(x, dim)
        p = logp.exp()
    kk = max(k, 2)
    conf = p.amax(dim).clamp_(0.0, 1.0)
    ent = (-(p * logp).sum(dim) / math.log(kk)).clamp_(0.0, 1.0)
    return (conf.numpy(), ent.numpy()) if was_numpy else (conf, ent)
