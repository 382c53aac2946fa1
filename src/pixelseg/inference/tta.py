"""Test-time augmentation: horizontal flip and multi-scale, averaged in probability space.

Works on the network input (N x C x H x W, normalized), so it composes with whole-image prediction and
with every sliding window alike, on any backend. Flip and original go through the network as one batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pixelseg.errors import PixelsegError


@dataclass(frozen=True)
class TTA:
    flip: bool = True
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        if not self.scales or any(not 0.25 <= s <= 4.0 for s in self.scales):
            raise PixelsegError(f"--tta {' '.join(f'{v:g}' for v in self.scales)}: TTA scales must be 1..n values in "
                                "0.25..4 (e.g. --tta 0.75 1 1.25)")

    @property
    def passes(self) -> int:
        return len(self.scales) * (2 if self.flip else 1)


def tta_probs(run, x: torch.Tensor, tta: TTA) -> torch.Tensor:
    """Mean softmax over the augmented views, at x's size. run: N x C x h x w -> N x K x h x w logits."""
    n, _, h, w = x.shape
    total = None
    for s in tta.scales:
        xs = x if s == 1.0 else F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))),
                                               mode="bilinear", align_corners=False)
        batch = torch.cat([xs, xs.flip(-1)]) if tta.flip else xs
        p = torch.softmax(run(batch).float().cpu(), 1)
        if tta.flip:
            p = p[:n] + p[n:].flip(-1)
        if s != 1.0:
            p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
        total = p if total is None else total + p
    return total / tta.passes
