"""Learning from images without masks: consistency training with self-adaptive, class-aware thresholds.

Each training step also draws a batch of unlabelled images (their own stream, its position part of the resume
state). The images go through the training transform (the weak view: flips, crops, scale as the labelled ones;
padding marked as ignore). The model, without gradients, labels the weak view; a pixel keeps its pseudo-label
when its confidence passes its class's threshold, else it is ignored. The strong view — the same pixels with
colour jitter, noise and CutMix between the images of the batch (labels mixed the same way) — is trained on those
pseudo-labels, in the same forward pass as the labelled batch (one forward under DDP), weighted by
`train.semi_weight`. This is the FixMatch family for segmentation (FixMatch: Sohn et al. 2020; UniMatch: Yang et
al. 2023, CutMix as the strong perturbation).

Thresholds follow FreeMatch's self-adaptive thresholding (Wang et al. 2023): an EMA of the mean top probability
over unlabelled pixels is the global threshold (it starts at 1/K and rises as the model grows sure), scaled per
class by the EMA of the mean class probability divided by its maximum, so a class the model predicts rarely
gets a lower bar and is not swamped by the dominant one. Both EMAs live in the run's state (`State.semi`).

Why by hand: no maintained library implements semi-supervised segmentation inside a user's own training loop
(USB / TorchSSL are classification frameworks that own the loop); the pieces here are a few tensor operations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pixelseg.data.dataset import SegDataset
from pixelseg.data.index import Sample

EMA = 0.999            # FreeMatch's momentum for the threshold statistics


class UnlabelledDataset(SegDataset):
    """The training view of images without masks: (image C x H x W, pad mask H x W) where the pad mask is the
    ignore index where the transform padded (scale jitter, crops past the border) and 0 elsewhere."""

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from pixelseg.data.cache import cached
        from pixelseg.data.crops import CropTransform
        from pixelseg.data.io import read_image
        s = self.samples[i % len(self.samples)]
        if isinstance(self.transform, CropTransform):     # crops of big images: decode each file once (cache.py)
            image = cached(s.image, f"image{self.in_channels}", lambda: read_image(s.image, self.in_channels))
        else:
            image = read_image(s.image, self.in_channels)
        return image, np.zeros(image.shape[:2], np.uint8)



def unlabelled_samples(paths) -> list[Sample]:
    return [Sample(p, None, p.stem) for p in paths]


class UnlabelledStream:
    """Batches of unlabelled images, endlessly: epoch after epoch of their own seeded order, from the position
    saved in the state (`State.semi["epoch"]`, `["offset"]`), so a resumed run draws the very same batches."""

    def __init__(self, dataset: UnlabelledDataset, batch: int, seed: int, state, d, num_workers: int, pin: bool):
        self.dataset, self.batch, self.seed, self.state, self.d = dataset, batch, seed, state, d
        self.num_workers, self.pin, self._it = num_workers, pin, None

    def _loader(self):
        from pixelseg.data.sampling import EpochSampler, epoch_order
        sem = self.state.semi
        order = epoch_order(len(self.dataset), self.seed + 1_000_003, sem["epoch"])
        self.dataset.set_epoch(self.seed + 1_000_003, sem["epoch"])
        return iter(DataLoader(self.dataset, batch_size=self.batch, drop_last=True, num_workers=self.num_workers,
                               sampler=EpochSampler(order, sem["offset"], self.d.rank, self.d.world), pin_memory=self.pin,
                               generator=torch.Generator().manual_seed(self.seed * 7919 + sem["epoch"] + 17)))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        sem = self.state.semi
        for _ in range(2):
            if self._it is None:
                self._it = self._loader()
            try:
                x, pad = next(self._it)
            except StopIteration:
                sem["epoch"], sem["offset"], self._it = sem["epoch"] + 1, 0, None
                continue
            sem["offset"] += self.batch * self.d.world
            return x, pad
        raise RuntimeError("the unlabelled images give no full batch")     # guarded by the recipe (enough images)


def initial_state(num_classes: int) -> dict:
    """What State.semi holds: the stream's position and the threshold EMAs, plus counts for the report."""
    return {"epoch": 0, "offset": 0, "tau": 1.0 / num_classes, "p": [1.0 / num_classes] * num_classes,
            "used": [0] * num_classes, "seen": 0, "images": 0}


def class_thresholds(sem: dict, device="cpu") -> torch.Tensor:
    """Each class's confidence threshold: the global EMA scaled by the class's EMA probability over its maximum."""
    p = torch.tensor(sem["p"], dtype=torch.float32, device=device)
    return sem["tau"] * p / p.max().clamp_min(1e-12)


@dataclass
class Consistency:
    num_classes: int
    ignore_index: int
    weight: float = 1.0

    def thresholds(self, sem: dict, device) -> torch.Tensor:
        return class_thresholds(sem, device)

    @torch.no_grad()
    def pseudo_labels(self, model, xw: torch.Tensor, pad: torch.Tensor, sem: dict, amp_dtype) -> torch.Tensor:
        """The weak view's labels where they pass their class's threshold, the ignore index elsewhere; the
        threshold EMAs are updated from this batch (every pixel that is not padding)."""
        with torch.autocast(xw.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            probs = torch.softmax(model(xw).float(), 1)
        conf, label = probs.max(1)
        valid = pad != self.ignore_index
        if valid.any():
            mean_conf = float(conf[valid].mean())
            mean_p = probs.permute(0, 2, 3, 1)[valid].mean(0)
            sem["tau"] = EMA * sem["tau"] + (1 - EMA) * mean_conf
            sem["p"] = (EMA * torch.tensor(sem["p"], device=mean_p.device) + (1 - EMA) * mean_p).tolist()
        keep = valid & (conf >= self.thresholds(sem, xw.device)[label])
        used = torch.bincount(label[keep], minlength=self.num_classes)
        sem["used"] = [int(a + b) for a, b in zip(sem["used"], used.tolist())]
        sem["seen"] += int(valid.sum())
        sem["images"] += int(xw.shape[0])
        return torch.where(keep, label, torch.full_like(label, self.ignore_index))

    def strong(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour jitter and noise per image, then CutMix: a box of each image (and its labels) from the next
        image of the batch. Drawn from `seed` alone (the step), so a resumed run repeats it exactly."""
        g = torch.Generator().manual_seed(seed)
        n, c, h, w = x.shape
        bright = (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.8
        contrast = 0.6 + torch.rand(n, 1, 1, 1, generator=g) * 0.8
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        noise = torch.randn(x.shape, generator=g) * 0.1
        xs = (x - mean) * contrast.to(x.device) + mean + bright.to(x.device) + noise.to(x.device)
        ys = y.clone()
        if n > 1:
            for i in range(n):
                side = float(torch.empty(1).uniform_(0.25, 0.5, generator=g))
                bh, bw = max(1, int(h * side)), max(1, int(w * side))
                y0 = int(torch.randint(0, h - bh + 1, (1,), generator=g))
                x0 = int(torch.randint(0, w - bw + 1, (1,), generator=g))
                j = (i + 1) % n
                xs[i, :, y0:y0 + bh, x0:x0 + bw] = x[j, :, y0:y0 + bh, x0:x0 + bw]
                ys[i, y0:y0 + bh, x0:x0 + bw] = y[j, y0:y0 + bh, x0:x0 + bw]
        return xs, ys

    def loss(self, logits: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        if (ys == self.ignore_index).all():
            return logits.sum() * 0.0          # nothing confident yet: no signal, but the graph stays whole (DDP)
        return self.weight * F.cross_entropy(logits.float(), ys, ignore_index=self.ignore_index)


def summary(sem: dict | None, class_names) -> dict | None:
    """metrics.json's "unlabelled": how many images were drawn, the share of their pixels that passed the
    thresholds (overall and per predicted class) and the thresholds at the end."""
    if not sem or not sem.get("seen"):
        return None
    seen = sem["seen"]
    thresholds = class_thresholds(sem).tolist()
    return {"images_drawn": int(sem["images"]), "pixels_seen": int(seen),
            "used_share": round(sum(sem["used"]) / seen, 4),
            "used_share_by_class": {n: round(u / seen, 5) for n, u in zip(class_names, sem["used"])},
            "thresholds": {n: round(t, 4) for n, t in zip(class_names, thresholds)}}
