"""The network's input: an image at the run's preprocessing (channels, training size, mean/std).

One function that prediction, export's parity check and INT8 calibration share, built on the very
transform validation uses in training, so predict, evaluate and an exported model all see identical
inputs. `pre` is a run's Preprocessing (pixelseg.run.folder); only its fields are read here.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from pixelseg.data.dataset import normalize
from pixelseg.data.io import IMAGE_EXTS, to_channels
from pixelseg.data.transforms import eval_transform
from pixelseg.errors import PixelsegError


def preprocess(image: np.ndarray, pre) -> torch.Tensor:
    """HxW(xC) uint8 -> C x H' x W' normalized tensor at the training size."""
    x = as_channels(image, pre.in_channels)
    if tuple(x.shape[:2]) != tuple(pre.image_size):    # a resize to the same size is a copy: skip it (video)
        x = _resizer(tuple(pre.image_size))(image=x)["image"]
    if x.ndim == 2:
        x = x[:, :, None]
    return normalize(x, pre.mean, pre.std)


def as_channels(image: np.ndarray, channels: int) -> np.ndarray:
    try:
        return to_channels(image, channels)
    except ValueError:
        raise PixelsegError(f"image has {image.shape[2]} channels but the model takes {channels}; "
                            "convert the image or use a model trained with matching --in-channels") from None


@functools.lru_cache(maxsize=8)
def _resizer(size: tuple[int, int]):
    return eval_transform(size)


def list_inputs(inputs) -> list[Path]:
    """Files and folders (their images, sorted) -> image paths; a missing path is an error."""
    out = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS and not q.name.startswith("."))
            if not found:
                raise PixelsegError(f"{p}: folder holds no images ({', '.join(IMAGE_EXTS)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise PixelsegError(f"{p}: not found; give image files or folders of images")
    return out
