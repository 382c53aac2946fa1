"""torch Datasets over a DatasetIndex split: decode in the loader workers, augment, normalize."""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import Dataset

from pixelseg.data.checks import check_mask
from pixelseg.data.index import Sample
from pixelseg.data.io import read_image
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

    def set_epoch(self, seed: int, epoch: int) -> None:
        self.seed, self.epoch = seed, epoch

    def __len__(self):
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.samples[i]
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
