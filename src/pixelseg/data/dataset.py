"""torch Datasets over a DatasetIndex split: decode in the loader workers, augment, normalize."""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import Dataset

from pixelseg.data.cache import cached
from pixelseg.data.tools.checks import check_mask
from pixelseg.data.crops import CropTransform
from pixelseg.data.index import Sample
from pixelseg.data.io import image_size, read_image
from pixelseg.data.labels import load_mask


def normalize(image: np.ndarray, mean, std) -> torch.Tensor:
    """HxWxC uint8 -> CxHxW float32, (x - mean) / std with mean/std on the 0..255 scale."""
    if not image.flags.writeable or not image.flags.c_contiguous:   # PIL hands out read-only arrays
        image = np.array(image, copy=True, order="C")
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    m, s = _stats(tuple(mean), tuple(std))
    return x.sub_(m).div_(s)


@functools.lru_cache(maxsize=16)
def _stats(mean: tuple, std: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(-1, 1, 1))


class SegDataset(Dataset):
    """Training view: (image CxHxW float, mask HxW long) after the paired transform.

    The augmentation of sample i in epoch e is drawn from a seed of (seed, e, i) alone, so it is the same
    whatever the number of loader workers and whether the epoch was interrupted and resumed.
    """

    def __init__(self, samples: list[Sample], num_classes: int, ignore_index: int, in_channels: int,
                 mean, std, transform, color_channel: int | None = None):
        self.samples, self.num_classes, self.ignore_index = samples, num_classes, ignore_index
        self.in_channels, self.mean, self.std = in_channels, mean, std
        self.transform, self.color_channel = transform, color_channel
        self.seed, self.epoch = 0, 0
        self.crops_per_image = crops_per_image(samples, transform) if isinstance(transform, CropTransform) else 1

    def set_epoch(self, seed: int, epoch: int) -> None:
        self.seed, self.epoch = seed, epoch

    def __len__(self):
        return len(self.samples) * self.crops_per_image

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.samples[i % len(self.samples)]
        if isinstance(self.transform, CropTransform):   # crops read a window: decode big files once (cache.py)
            image = cached(s.image, f"image{self.in_channels}", lambda: read_image(s.image, self.in_channels))
            # a decoded format (COCO, LabelMe) may share one file between samples: its masks are not cached
            mask = load_mask(s, self.color_channel) if s.decode is not None else \
                cached(s.mask, f"mask{self.color_channel}", lambda: load_mask(s, self.color_channel))
            return image, mask                      # masks were checked by the data check before training
        image = read_image(s.image, self.in_channels)
        mask = load_mask(s, self.color_channel)
        check_mask(mask, image.shape[:2], self.num_classes, self.ignore_index, s)
        return image, mask

    def __getitem__(self, i):
        image, mask = self.load(i)
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0]))
        out = self.transform(image=image, mask=mask)
        return normalize(out["image"], self.mean, self.std), torch.from_numpy(out["mask"].astype(np.int64))


def crops_per_image(samples: list[Sample], transform: CropTransform) -> int:
    """Crops of an image in one epoch: as many as cover its area at the training scale (1..64), so an epoch
    of crops sees about as many pixels as an epoch of whole images would."""
    if not samples:
        return 1
    h, w = image_size(samples[0].image)
    ch, cw = transform.crop
    return int(min(64, max(1, round(h * w * transform.scale ** 2 / (ch * cw)))))


class EvalDataset(SegDataset):
    """Evaluation view: the resized network input plus the mask at its ORIGINAL resolution, because
    metrics are computed on the original pixels, not on the network's grid."""

    def __getitem__(self, i):
        image, mask = self.load(i)
        x = self.transform(image=image)["image"]
        return normalize(x, self.mean, self.std), torch.from_numpy(mask.astype(np.int64)), i


def eval_collate(batch):
    xs, masks, idx = zip(*batch)
    return torch.stack(xs), list(masks), list(idx)
