"""Paired image/mask augmentation presets on albumentations.

Geometric transforms move image and mask together (the mask always with nearest-neighbour, padded
with the ignore index so padding never counts as a class); photometric ones touch the image only.
The network sees `size` = (H, W): every image is resized to it (inference does the same, see
inference/predictor.py), with scale jitter and a random crop around it during training.
"""
from __future__ import annotations

import cv2
import albumentations as A

from pixelseg.errors import PixelsegError

PRESETS = ("none", "light", "default", "strong")


def _photometric(channels: int, strength: float) -> list:
    ops = [A.RandomBrightnessContrast(brightness_limit=0.25 * strength, contrast_limit=0.25 * strength, p=0.5)]
    if channels == 3:
        ops.append(A.HueSaturationValue(hue_shift_limit=int(10 * strength), sat_shift_limit=int(25 * strength),
                                        val_shift_limit=0, p=0.5))
    return ops


def train_transform(size: tuple[int, int], preset: str = "default", ignore_index: int = 255,
                    channels: int = 3) -> A.Compose:
    h, w = size
    # cv2's INTER_NEAREST samples floor(x * scale), not pixel centres like INTER_LINEAR: it shifts mask
    # edges by up to a pixel against the image. NEAREST_EXACT uses the same centres as the image.
    resize = A.Resize(h, w, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT)
    if preset == "none":
        ops = [resize]
    elif preset == "light":
        ops = [resize, A.HorizontalFlip(p=0.5)]
    elif preset in ("default", "strong"):
        s = 1.0 if preset == "default" else 1.6
        ops = [
            resize,
            # scale jitter 0.75x..1.5x (strong: 0.5x..2x), then pad (ignore index) / crop back to size
            A.RandomScale(scale_limit=(-0.25, 0.5) if preset == "default" else (-0.5, 1.0), p=1.0,
                          interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT),
            A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index),
            A.RandomCrop(h, w),
            A.HorizontalFlip(p=0.5),
            *_photometric(channels, s),
        ]
        if preset == "strong":
            ops += [
                A.Affine(rotate=(-15, 15), shear=(-5, 5), border_mode=cv2.BORDER_CONSTANT, fill=0,
                         fill_mask=ignore_index, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST, p=0.5),
                A.GaussNoise(std_range=(0.02, 0.08), p=0.3),
                A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=5)], p=0.2),
            ]
    else:
        raise PixelsegError(f"unknown augmentation preset '{preset}'; valid: {', '.join(PRESETS)}")
    return A.Compose(ops)


def eval_transform(size: tuple[int, int]) -> A.Compose:
    """Image only: resize to the network size. Masks stay at their original resolution for metrics."""
    return A.Compose([A.Resize(size[0], size[1], interpolation=cv2.INTER_LINEAR)])
