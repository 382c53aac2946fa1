"""Sliding-window prediction for images far larger than the training size (aerial tiles, slides).

The window runs at the image's native resolution; overlapping windows are blended with Gaussian
weights (nnU-Net's sigma = 1/8 of the window), which down-weights the window borders where the network
sees the least context, so there are no seams. Windows are visited row by row and a row band is
finished (divided by its weights, arg-maxed) as soon as no later window touches it: memory is
O(K x window height x image width) plus the input and the label map, never K x H x W.

A run trained at a scale (Preprocessing.resize "scale") predicts at it: the image is resized by the scale,
predicted whole when it fits WHOLE_PIXELS, else by windows of the training crop (`scaled_bands`), and each
band is resized back to the original rows.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from pixelseg.data.crops import resize_image, scaled_size
from pixelseg.data.dataset import normalize
from pixelseg.data.io import to_channels
from pixelseg.errors import PixelsegError


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


def sliding_window_bands(image: np.ndarray, probs_fn: Callable[[torch.Tensor], torch.Tensor], pre, num_classes: int,
                         window: tuple[int, int], overlap: float = 0.25, batch_size: int = 4,
                         blend: str = "gaussian") -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield (y0, y1, K x (y1-y0) x W probabilities) bands covering the image top to bottom.

    probs_fn: N x C x h x w normalized input -> N x K x h x w probabilities (softmax or TTA mean).
    blend: "gaussian", or "uniform" (a plain mean of the overlapping windows, which shows seams).
    """
    if blend not in ("gaussian", "uniform"):
        raise PixelsegError(f"unknown blending '{blend}'; valid: gaussian, uniform")
    if not 0 <= overlap < 1:
        raise PixelsegError(f"--overlap {overlap} must be in [0, 1) (a share of the window, e.g. 0.25)")
    H, W = image.shape[:2]
    th, tw = min(window[0], H), min(window[1], W)
    if th < 1 or tw < 1:
        raise PixelsegError(f"--tile {window[0]} {window[1]}: the window must be at least 1x1")
    sy, sx = max(1, int(th * (1 - overlap))), max(1, int(tw * (1 - overlap)))
    ys, xs = starts(H, th, sy), starts(W, tw, sx)
    weight = gaussian_weights(th, tw) if blend == "gaussian" else torch.ones(th, tw)
    acc = torch.zeros(num_classes, th, W)
    wsum = torch.zeros(th, W)
    base = 0
    for row, y in enumerate(ys):
        # base == y here: the band [base, base + th) is exactly this window row
        for b in range(0, len(xs), batch_size):
            cols = xs[b:b + batch_size]
            crops = [normalize(to_channels(image[y:y + th, x:x + tw], pre.in_channels), pre.mean, pre.std) for x in cols]
            probs = probs_fn(torch.stack(crops)).float().cpu()
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


# the largest scaled image predicted in one piece (activations of LR-ASPP at 2048^2 stay ~2 GB on a CPU)
WHOLE_PIXELS = {"cpu": 2048 * 2048, "cuda": 4096 * 4096}


def too_big(shape, pre, device) -> bool:
    h, w = scaled_size(shape[:2], pre.scale)
    return h * w > WHOLE_PIXELS["cuda" if torch.device(device).type == "cuda" else "cpu"]


def scaled_input(image: np.ndarray, pre) -> torch.Tensor:
    """C x h x w normalized input: `image` (already at the model's channels) resized by pre.scale."""
    x = resize_image(image, scaled_size(image.shape, pre.scale))
    return normalize(x if x.ndim == 3 else x[:, :, None], pre.mean, pre.std)


def scaled_bands(image: np.ndarray, probs_fn, pre, num_classes: int, window: tuple[int, int], overlap: float = 0.25,
                 batch_size: int = 4) -> Iterator[tuple[int, int, torch.Tensor]]:
    """sliding_window_bands at the training scale, bands given back in the ORIGINAL image's rows and width."""
    H, W = image.shape[:2]
    size = scaled_size((H, W), pre.scale)
    small = resize_image(to_channels(image, pre.in_channels), size)
    fy, done = H / size[0], 0
    for y0, y1, p in sliding_window_bands(small, probs_fn, pre, num_classes, window, overlap, batch_size):
        o1 = H if y1 >= size[0] else round(y1 * fy)
        if o1 > done:
            yield done, o1, torch.nn.functional.interpolate(p[None], size=(o1 - done, W), mode="bilinear",
                                                            align_corners=False)[0]
            done = o1
