"""Class statistics of a training split and the imbalance tools built on them.

- `class_stats`: per-image pixel counts of every class, read once from the masks.
- `median_frequency_weights`: loss weights by median frequency balancing (Eigen & Fergus, ICCV 2015;
  the SegNet weights): freq(c) = pixels of class c / pixels of the images where c appears,
  weight(c) = median over classes of freq / freq(c). A class that never appears gets weight 1.
- `repeat_factors`: repeat-factor sampling (Gupta et al., LVIS, CVPR 2019; detectron2's
  RepeatFactorTrainingSampler) for segmentation: f(c) = share of images that contain class c,
  r(c) = max(1, sqrt(t / f(c))), an image is repeated max over its classes of r(c) times per epoch,
  the fractional part by a seeded coin flip so the expected epoch length is sum(r).
- `epoch_order`: the seeded sample order of one epoch (uniform permutation or repeat-factor), a pure
  function of (seed, epoch) so a resumed or multi-process run replays it exactly.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pixelseg.data.index import Sample
from pixelseg.data.io import read_mask


@dataclass(frozen=True)
class ClassStats:
    pixels: np.ndarray          # images x K int64: pixels of each class in each image (ignore not counted)

    @property
    def present(self) -> np.ndarray:
        return self.pixels > 0


def class_stats(samples: list[Sample], num_classes: int, color_channel: int | None = None,
                workers: int = 4) -> ClassStats:
    """Per-image class pixel counts over `samples` (masks are read in threads: PIL's decoder releases
    the GIL). Values outside 0..K-1 (the ignore index) are not counted."""
    def count(s: Sample) -> np.ndarray:
        # a format whose files are not index masks attaches a decoder to each Sample (data/labels.py)
        decode = getattr(s, "decode", None)
        m = (decode(s.mask) if decode is not None else read_mask(s.mask, color_channel)).ravel()
        return np.bincount(m[m < num_classes].astype(np.int64), minlength=num_classes)[:num_classes]

    with ThreadPoolExecutor(workers) as ex:
        rows = list(ex.map(count, samples))
    return ClassStats(np.stack(rows) if rows else np.zeros((0, num_classes), np.int64))


def median_frequency_weights(stats: ClassStats) -> list[float]:
    pixels = stats.pixels.astype(np.float64)
    image_pixels = pixels.sum(1, keepdims=True)                  # labelled pixels of each image
    class_pixels = pixels.sum(0)
    pixels_where_present = (image_pixels * stats.present).sum(0)
    seen = class_pixels > 0
    freq = np.zeros_like(class_pixels)
    freq[seen] = class_pixels[seen] / pixels_where_present[seen]
    if not seen.any():
        return [1.0] * pixels.shape[1]
    median = float(np.median(freq[seen]))
    return [round(median / f, 6) if f > 0 else 1.0 for f in freq]


def repeat_factors(stats: ClassStats, threshold: float) -> np.ndarray:
    """Per-image repeat factor >= 1 (float)."""
    present = stats.present
    n = max(1, present.shape[0])
    image_share = present.sum(0) / n                             # f(c)
    with np.errstate(divide="ignore"):
        class_r = np.maximum(1.0, np.sqrt(threshold / np.where(image_share > 0, image_share, np.inf)))
    return np.where(present, class_r[None, :], 1.0).max(1) if present.size else np.ones(present.shape[0])


def epoch_order(n: int, seed: int, epoch: int, factors: np.ndarray | None = None) -> list[int]:
    """The global sample order of one epoch. Uniform: a seeded permutation of range(n). With repeat
    factors: each image i appears floor(r_i) times plus once more with probability frac(r_i)."""
    import torch      # here: the doctor uses this module's statistics and should not load torch for them
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if factors is None:
        return torch.randperm(n, generator=g).tolist()
    r = torch.as_tensor(factors, dtype=torch.float64)
    reps = r.floor() + (torch.rand(len(r), generator=g, dtype=torch.float64) < r - r.floor()).double()
    idx = torch.repeat_interleave(torch.arange(len(r)), reps.long())
    return idx[torch.randperm(len(idx), generator=g)].tolist()


class EpochSampler:
    """This rank's share of one epoch's global sample order, from `start` (samples already consumed,
    for mid-epoch resume) on. Rank r takes every world-th sample from position r, so the r-th slices
    of the ranks' batches j together are exactly global batch j of a one-process run. The tail is cut
    to a multiple of the world size so every rank takes the same number of steps (as DistributedSampler
    with drop_last; that class cannot start mid-epoch or take a repeat-factor order, hence this one). A plain
    iterable with a length, which is all DataLoader asks of a sampler (no torch import here: the doctor uses
    this module)."""

    def __init__(self, order: list[int], start: int = 0, rank: int = 0, world: int = 1):
        rest = order[start:]
        self.indices = rest[rank:len(rest) // world * world:world]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)
