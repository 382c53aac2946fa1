"""Paired image/mask augmentation presets on albumentations.

Geometric transforms move image and mask together (the mask always with nearest-neighbour, padded
with the ignore index so padding never counts as a class); photometric ones touch the image only.
The network sees `size` = (H, W): every image is resized to it (inference does the same, see
inference/predictor.py), with scale jitter and a random crop around it during training (the
torchvision/mmseg recipe: random rescale, pad with the ignore index, random crop back to the size).

Presets: none, light (flips), default (scale jitter 0.75-1.5x + crop + flip + color), strong (0.5-2x,
rotation/shear, noise, blur), aerial (the 8 rotations/flips of the square: overhead imagery has no
"up"), medical (small rotations, elastic and grid deformations, gamma/contrast/noise; no flips, since
left and right are anatomy). A custom pipeline is an albumentations file (A.save / A.to_dict format,
YAML or JSON) given as data.augment: it runs after the resize to `size` and its output is padded /
center-cropped back to `size`.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import albumentations as A

from pixelseg.config import AUGMENT_PRESETS
from pixelseg.data.crops import CropTransform, ScaleImage
from pixelseg.errors import PixelsegError

PRESETS = AUGMENT_PRESETS
NEAREST = (cv2.INTER_NEAREST, cv2.INTER_NEAREST_EXACT)


def _photometric(channels: int, strength: float) -> list:
    ops = [A.RandomBrightnessContrast(brightness_limit=0.25 * strength, contrast_limit=0.25 * strength, p=0.5)]
    if channels == 3:
        ops.append(A.HueSaturationValue(hue_shift_limit=int(10 * strength), sat_shift_limit=int(25 * strength),
                                        val_shift_limit=0, p=0.5))
    return ops


def scale_crop(size: tuple[int, int], scale: tuple[float, float], ignore_index: int) -> list:
    """Scale jitter then a random crop back to `size`: RandomScale by a factor in `scale`, padding (image 0,
    mask the ignore index) where the scaled image is smaller than the crop."""
    h, w = size
    return [
        A.RandomScale(scale_limit=(scale[0] - 1.0, scale[1] - 1.0), p=1.0,
                      interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT),
        A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index),
        A.RandomCrop(h, w),
    ]


def train_transform(size: tuple[int, int], preset: str = "default", ignore_index: int = 255,
                    channels: int = 3, scale: float | None = None, focus: float = 0.5):
    """The paired training transform. With `scale` (big images): random crops of `size` at that scale with
    scale jitter (data/crops.py), then the preset's flips / colour; without: the whole image resized to size."""
    if scale is not None:
        return crop_transform(size, preset, ignore_index, channels, scale, focus)
    h, w = size
    # cv2's INTER_NEAREST samples floor(x * scale), not pixel centres like INTER_LINEAR: it shifts mask
    # edges by up to a pixel against the image. NEAREST_EXACT uses the same centres as the image.
    resize = A.Resize(h, w, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT)
    if preset.lower().endswith((".yaml", ".yml", ".json")):
        return custom_transform(Path(preset), size, ignore_index)
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
    elif preset == "aerial":
        ops = [
            resize,
            *scale_crop(size, (0.75, 1.5), ignore_index),
            # the dihedral group of the square: 90-degree rotations and flips, exact (no interpolation);
            # a 90-degree turn swaps H and W, so on non-square sizes only flips keep the shape
            A.D4(p=1.0) if h == w else A.OneOf([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)], p=0.75),
            *_photometric(channels, 0.8),
        ]
    elif preset == "medical":
        ops = [
            resize,
            *scale_crop(size, (0.85, 1.2), ignore_index),
            A.Affine(rotate=(-10, 10), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index,
                     interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST, p=0.5),
            A.OneOf([
                A.ElasticTransform(alpha=max(h, w) * 0.5, sigma=max(h, w) * 0.06, border_mode=cv2.BORDER_CONSTANT,
                                   fill=0, fill_mask=ignore_index, interpolation=cv2.INTER_LINEAR,
                                   mask_interpolation=cv2.INTER_NEAREST),
                A.GridDistortion(num_steps=5, distort_limit=0.2, border_mode=cv2.BORDER_CONSTANT, fill=0,
                                 fill_mask=ignore_index, interpolation=cv2.INTER_LINEAR,
                                 mask_interpolation=cv2.INTER_NEAREST),
            ], p=0.3),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.RandomGamma(gamma_limit=(80, 120), p=0.3),
            A.GaussNoise(std_range=(0.01, 0.05), p=0.2),
        ]
    else:
        raise PixelsegError(f"unknown augmentation preset '{preset}'; valid: {', '.join(PRESETS)}, "
                            "or an albumentations pipeline file (.yaml/.json)")
    return A.Compose(ops)


def check_augment(spec: str | None) -> None:
    """Fail now, before a run folder exists, on a preset name or pipeline file that train_transform would
    reject (None = chosen later by the recipe). The padding value is checked later, against the dataset's
    ignore index."""
    if spec is None:
        return
    if spec.lower().endswith((".yaml", ".yml", ".json")):
        load_pipeline(Path(spec), None)
    elif spec not in PRESETS:
        train_transform((32, 32), spec)   # the unknown-preset message


def custom_transform(path: Path, size: tuple[int, int], ignore_index: int) -> A.Compose:
    """A user's albumentations pipeline, after the resize to `size`, padded/cropped back to it."""
    user = load_pipeline(path, ignore_index)
    h, w = size
    resize = A.Resize(h, w, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST_EXACT)
    return A.Compose([resize, *user.transforms,
                      A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0,
                                    fill_mask=ignore_index),
                      A.CenterCrop(h, w)])


def load_pipeline(path: Path, ignore_index: int | None) -> A.Compose:
    """A user's albumentations pipeline (A.save format), checked so that it cannot corrupt labels silently:
    masks must be resampled with nearest-neighbour and padded with the ignore index (the padding is not
    checked when ignore_index is None: the early check, before the dataset is known)."""
    if not path.is_file():
        raise PixelsegError(f"{path}: augmentation pipeline file not found; give a file written by "
                            "albumentations.save(pipeline, path) or a preset name")
    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    try:
        user = A.load(str(path), data_format=fmt)
    except Exception as e:  # albumentations raises many types (KeyError, ValueError, TypeError, yaml errors)
        raise PixelsegError(f"{path}: not an albumentations pipeline ({type(e).__name__}: {e}); write it with "
                            "albumentations.save(A.Compose([...]), path)") from None
    for t in _flatten(user):
        name = type(t).__name__
        mi = getattr(t, "mask_interpolation", None)
        if mi is not None and mi not in NEAREST:
            raise PixelsegError(f"{path}: {name} resamples the mask with interpolation {mi}, which invents class values; "
                                f"set mask_interpolation: {cv2.INTER_NEAREST} (nearest)")
        fm = getattr(t, "fill_mask", None)
        pads = getattr(t, "pad_if_needed", True) and getattr(t, "border_mode", cv2.BORDER_CONSTANT) == cv2.BORDER_CONSTANT
        if fm is not None and pads and ignore_index is not None and fm != ignore_index:
            raise PixelsegError(f"{path}: {name} pads the mask with {fm}, which would count as a class; "
                                f"set fill_mask: {ignore_index} (the ignore index)")
    return user


def _flatten(t) -> list:
    inner = getattr(t, "transforms", None)
    if inner is None:
        return [t]
    return [x for c in inner for x in _flatten(c)]


def eval_transform(size: tuple[int, int], scale: float | None = None):
    """Image only: resize to the network size (with `scale`: by that factor, data/crops.py). Masks stay at
    their original resolution for metrics."""
    if scale is not None:
        return ScaleImage(scale)
    return A.Compose([A.Resize(size[0], size[1], interpolation=cv2.INTER_LINEAR)])


# scale jitter around data.scale per preset, and what follows the crop (the geometric ops that keep pixel size)
JITTER = {"none": (1.0, 1.0), "light": (0.75, 1.5), "default": (0.75, 1.5), "strong": (0.5, 2.0),
          "aerial": (0.75, 1.5), "medical": (0.85, 1.2)}


def crop_transform(crop, preset: str, ignore_index: int, channels: int, scale: float, focus: float) -> CropTransform:
    h, w = crop
    if preset.lower().endswith((".yaml", ".yml", ".json")):
        user = load_pipeline(Path(preset), ignore_index)
        after = A.Compose([*user.transforms, A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT,
                                                           fill=0, fill_mask=ignore_index), A.CenterCrop(h, w)])
        return CropTransform(crop, scale, (1.0, 1.0), ignore_index, after, focus)
    if preset not in JITTER:
        train_transform((32, 32), preset)     # the unknown-preset message
    ops = {"none": [], "light": [A.HorizontalFlip(p=0.5)],
           "aerial": [A.D4(p=1.0) if h == w else A.OneOf([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)], p=0.75),
                      *_photometric(channels, 0.8)],
           "medical": [A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
                       A.RandomGamma(gamma_limit=(80, 120), p=0.3)]}.get(preset)
    if ops is None:   # default, strong
        ops = [A.HorizontalFlip(p=0.5), *_photometric(channels, 1.0 if preset == "default" else 1.6)]
    return CropTransform(crop, scale, JITTER[preset], ignore_index, A.Compose(ops), focus)
