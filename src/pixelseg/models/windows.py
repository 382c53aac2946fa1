"""Sliding windows with Gaussian blending, the core shared by prediction (inference/tiling.py, over numpy
images band by band) and evaluation (over an already-normalized tensor, when a run trained at a scale meets
an image too big to score in one piece).

Overlapping windows are blended with Gaussian weights (nnU-Net's sigma = 1/8 of the window), which
down-weights the window borders where the network sees the least context, so there are no seams. Windows
are visited row by row and a row band is finished as soon as no later window touches it: memory is
O(K x window height x image width), never K x H x W.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from pixelseg.config import check_overlap
from pixelseg.errors import PixelsegError

# the largest scaled image scored in one piece (activations of LR-ASPP at 2048^2 stay ~2 GB on a CPU)
WHOLE_PIXELS = {"cpu": 2048 * 2048, "cuda": 4096 * 4096}


def whole_fits(h: int, w: int, device) -> bool:
    """Whether an h x w network input is scored in one piece on `device` (WHOLE_PIXELS)."""
    return h * w <= WHOLE_PIXELS["cuda" if torch.device(device).type == "cuda" else "cpu"]


def starts(length: int, window: int, stride: int) -> list[int]:
    """Window offsets covering [0, length): evenly strided, the last one flush with the end."""
    if length <= window:
        return [0]
    out = list(range(0, length - window, stride))
    return out + [length - window]


def gaussian_weights(h: int, w: int, sigma_scale: float = 0.125) -> torch.Tensor:
    def one(n: int) -> torch.Tensor:
        c = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        g = torch.exp(-0.5 * (c / max(n * sigma_scale, 1e-6)) ** 2)
        return g / g.max()
    # floor: pixels only one window covers (image corners) still get a well-defined value
    return (one(h)[:, None] * one(w)[None, :]).clamp_min(1e-3)


def blended_bands(H: int, W: int, crop: Callable[[int, int, int, int], torch.Tensor],
                  probs_fn: Callable[[torch.Tensor], torch.Tensor], num_classes: int | None, window: tuple[int, int],
                  overlap: float = 0.25, batch_size: int = 4, blend: str = "gaussian"
                  ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield (y0, y1, K x (y1-y0) x W probabilities) bands covering an H x W input top to bottom.

    crop(y, x, h, w): the C x h x w normalized network input of that window.
    num_classes: K, or None to take it from the first window's output.
    probs_fn: N x C x h x w input -> N x K x h x w probabilities (softmax or TTA mean).
    blend: "gaussian", or "uniform" (a plain mean of the overlapping windows, which shows seams).
    """
    if blend not in ("gaussian", "uniform"):
        raise PixelsegError(f"unknown blending '{blend}'; valid: gaussian, uniform")
    check_overlap(overlap)
    th, tw = min(window[0], H), min(window[1], W)
    if th < 1 or tw < 1:
        raise PixelsegError(f"--tile {window[0]} {window[1]}: the window must be at least 1x1")
    sy, sx = max(1, int(th * (1 - overlap))), max(1, int(tw * (1 - overlap)))
    ys, xs = starts(H, th, sy), starts(W, tw, sx)
    weight = gaussian_weights(th, tw) if blend == "gaussian" else torch.ones(th, tw)
    acc = None if num_classes is None else torch.zeros(num_classes, th, W)
    wsum = torch.zeros(th, W)
    base = 0
    for row, y in enumerate(ys):
        # base == y here: the band [base, base + th) is exactly this window row
        for b in range(0, len(xs), batch_size):
            cols = xs[b:b + batch_size]
            probs = probs_fn(torch.stack([crop(y, x, th, tw) for x in cols])).float().cpu()
            if acc is None:                  # K from the first window when the caller does not know it
                acc = torch.zeros(probs.shape[1], th, W)
            for p, x in zip(probs, cols):
                acc[:, :, x:x + tw] += p * weight
                wsum[:, x:x + tw] += weight
        nxt = ys[row + 1] if row + 1 < len(ys) else H
        done = nxt - base if row + 1 < len(ys) else th
        yield base, base + done, acc[:, :done] / wsum[:done]
        # slide the band down: rows still to be covered by the next window row move to the top
        keep = th - done
        if keep > 0:
            acc[:, :keep] = acc[:, done:done + keep].clone()
            wsum[:keep] = wsum[done:done + keep].clone()
        acc[:, keep:] = 0
        wsum[keep:] = 0
        base = nxt


def windowed_log_probs(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, window: tuple[int, int],
                       overlap: float = 0.25, batch_size: int = 4) -> torch.Tensor:
    """N x K x H x W log of the blended window probabilities of `model` over the N x C x H x W input `x`
    (on the CPU; each window batch runs on x's device): the scores of a sliding-window prediction."""
    def probs(t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(t).float(), 1)
    out = []
    for i in range(len(x)):
        bands = blended_bands(x.shape[-2], x.shape[-1], lambda y, x0, h, w: x[i, :, y:y + h, x0:x0 + w], probs,
                              None, window, overlap, batch_size)
        out.append(torch.cat([p for _, _, p in bands], dim=1).clamp_min(1e-12).log())
    return torch.stack(out)
