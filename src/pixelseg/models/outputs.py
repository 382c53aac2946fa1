"""What every model's output goes through, whatever runs it: logits brought back to the image's pixels,
and a one-channel (sigmoid) model seen as a two-class one. Used by training, inference and export alike,
so it lives with the models, below all of them.
"""
from __future__ import annotations

import math

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
