"""Sliding-window prediction for images far larger than the training size (aerial tiles, slides).

The window runs at the image's native resolution, blended and banded by models/windows.py: memory is
O(K x window height x image width) plus the input and the label map, never K x H x W.

A run trained at a scale (Preprocessing.resize "scale") predicts at it: the image is resized by the scale,
predicted whole when it fits windows.WHOLE_PIXELS, else by windows of the training crop (`scaled_bands`),
and each band is resized back to the original rows.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from pixelseg.data.crops import resize_image, scaled_size
from pixelseg.data.dataset import normalize
from pixelseg.data.io import to_channels
from pixelseg.models.windows import blended_bands, whole_fits


def sliding_window_bands(image: np.ndarray, probs_fn: Callable[[torch.Tensor], torch.Tensor], pre, num_classes: int,
                         window: tuple[int, int], overlap: float = 0.25, batch_size: int = 4,
                         blend: str = "gaussian") -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield (y0, y1, K x (y1-y0) x W probabilities) bands covering the image top to bottom (models/windows.py),
    each window normalized from the uint8 image as it is reached.

    probs_fn: N x C x h x w normalized input -> N x K x h x w probabilities (softmax or TTA mean).
    blend: "gaussian", or "uniform" (a plain mean of the overlapping windows, which shows seams).
    """
    def crop(y: int, x: int, h: int, w: int) -> torch.Tensor:
        return normalize(to_channels(image[y:y + h, x:x + w], pre.in_channels), pre.mean, pre.std)
    return blended_bands(image.shape[0], image.shape[1], crop, probs_fn, num_classes, window, overlap, batch_size,
                         blend)


def too_big(shape, pre, device) -> bool:
    return not whole_fits(*scaled_size(shape[:2], pre.scale), device)


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
