"""Learning from images without masks: consistency training with an EMA teacher and class-aware thresholds.

From `train.semi_start` of the run on (40 % of the budget or epochs unless given: before that the labelled images
alone, so the teacher starts from a model that learned the masks and the early steps stay cheap), each training
step also draws a batch of `train.semi_batch` unlabelled images (half the labelled batch unless given; their own
stream, its position part of the resume state). The images go through the training transform (the weak view:
flips, crops, scale as the labelled ones; padding marked as ignore). The teacher — an exponential moving average
of the student's weights (`train.ema`, which the recipe sets when the run learns from unlabelled images), in eval
mode, without gradients — labels the weak view; a pixel keeps its pseudo-label when its confidence passes its
class's threshold, else it is ignored. The strong view — the same pixels with colour jitter, noise and CutMix
between the images of the batch (labels mixed the same way) — is trained on those pseudo-labels, in the same
forward pass as the labelled batch (one forward under DDP), weighted by `train.semi_weight`. This is the FixMatch /
Mean Teacher family for segmentation (FixMatch: Sohn et al. 2020; Mean Teacher: Tarvainen & Valpola 2017;
UniMatch: Yang et al. 2023, CutMix as the strong perturbation).

Thresholds are self-adaptive per class, in the spirit of FreeMatch (Wang et al. 2023) but on the confidence of
the pixels the teacher gives each class: a class's threshold is the moving average of that mean confidence,
bias-corrected (as Adam corrects its moments) and held in [MIN_THRESHOLD, MAX_THRESHOLD]. So a pixel is kept when
the teacher is surer of it than of its class's typical pixel, and a rare class the teacher is less sure of gets a
lower bar than the dominant one without losing its bar altogether. FreeMatch's own rule (a global average scaled
by each class's mean probability over its maximum) was measured here first: in segmentation the background holds
most pixels, so a digit class's threshold fell to 0.07 and 99.96 % of the pixels were kept with their errors
(benchmarks/semi.py, docs/history.md). The averages use MOMENTUM 0.99 (a horizon of about 100 steps, which a CPU
budget reaches); they live in the run's state (`State.semi`). With `train.semi_soft` (the default; --no-semi-soft
turns it off) the pixels under their class's threshold are not ignored but weighted by a Gaussian of how far under
they are, in units of the class's confidence spread (SoftMatch: Chen et al. 2023; the spread from a moving average
of the squared confidence, `conf2` in the state); the report's "used" share still counts the pixels at or above the
thresholds.

Measuring the pseudo-labels (benchmarks/semi.py): with PIXELSEG_SEMI_TRUTH=DIR, a folder holding each unlabelled
image's true mask (DIR/<stem>.png, class indices), the stream carries the truth through the same transform (crops
of unlabelled images are never aimed by a mask, so training is unchanged), and each history row records the share
of the pseudo-labels that were right and of the pixels that got one, since the row before. With PIXELSEG_SEMI_ORACLE=1
as well, the strong view learns the true masks instead of the pseudo-labels (benchmarks/semi.py's `oracle` arm):
what the scheme could gain, at the same cost, were every pixel labelled right.

Why by hand: no maintained library implements semi-supervised segmentation inside a user's own training loop
(USB / TorchSSL are classification frameworks that own the loop); the pieces here are a few tensor operations.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pixelseg.data.dataset import SegDataset
from pixelseg.data.index import Sample

MOMENTUM = 0.99        # of the per-class confidence averages behind the thresholds
MIN_THRESHOLD, MAX_THRESHOLD = 0.5, 0.95
TEACHER_EMA = 0.99     # train.ema the recipe sets for a run that learns from unlabelled images
TRUTH_ENV = "PIXELSEG_SEMI_TRUTH"    # benchmarks only: a folder of the unlabelled images' hidden masks
ORACLE_ENV = "PIXELSEG_SEMI_ORACLE"  # benchmarks only, with TRUTH_ENV: the strong view learns the hidden masks


def truth_folder(num_classes: int) -> Path | None:
    """The folder of hidden masks the pseudo-labels are measured against, when a benchmark gives one."""
    value = os.environ.get(TRUTH_ENV)
    if not value:
        return None
    if num_classes > 250:                 # the truth travels as class + 1 next to the padding's ignore index
        raise ValueError(f"{TRUTH_ENV}: at most 250 classes can be measured")
    return Path(value)


class UnlabelledDataset(SegDataset):
    """The training view of images without masks: (image C x H x W, pad mask H x W) where the pad mask is the
    ignore index where the transform padded (scale jitter, crops past the border) and 0 elsewhere. With a truth
    folder (TRUTH_ENV) the mask is the true class + 1 instead (0 where the truth is the ignore index);
    UnlabelledStream splits it into padding and truth."""

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from pixelseg.data.cache import cached
        from pixelseg.data.crops import CropTransform
        from pixelseg.data.io import read_image
        s = self.samples[i % len(self.samples)]
        if isinstance(self.transform, CropTransform):     # crops of big images: decode each file once (cache.py)
            image = cached(s.image, f"image{self.in_channels}", lambda: read_image(s.image, self.in_channels))
        else:
            image = read_image(s.image, self.in_channels)
        folder = truth_folder(self.num_classes)
        if folder is None:
            return image, np.zeros(image.shape[:2], np.uint8)
        from pixelseg.data.io import read_mask
        truth = read_mask(folder / f"{s.image.stem}.png")
        return image, np.where(truth == self.ignore_index, 0, truth.astype(np.int64) + 1).astype(np.uint8)



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

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(images, pad mask, true labels or None: see TRUTH_ENV)."""
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
            truth = None
            if truth_folder(self.dataset.num_classes) is not None:
                ignore = self.dataset.ignore_index
                truth = torch.where((pad >= 1) & (pad != ignore), pad - 1, torch.full_like(pad, ignore))
                pad = torch.where(pad == ignore, pad, torch.zeros_like(pad))
            return x, pad, truth
        raise RuntimeError("the unlabelled images give no full batch")     # guarded by the recipe (enough images)


def initial_state(num_classes: int) -> dict:
    """What State.semi holds: the stream's position, each class's confidence average and its bias correction
    (the weight the average has gathered), plus counts for the report."""
    return {"epoch": 0, "offset": 0, "conf": [0.0] * num_classes, "weight": [0.0] * num_classes,
            "used": [0] * num_classes, "seen": 0, "images": 0}


def _upgrade(sem: dict) -> None:
    """A state saved under the earlier FreeMatch rule (tau, p) starts the class averages afresh."""
    if "conf" not in sem:
        sem.pop("tau", None)
        sem.pop("p", None)
        sem.update(conf=[0.0] * len(sem["used"]), weight=[0.0] * len(sem["used"]))


def class_thresholds(sem: dict, device="cpu") -> torch.Tensor:
    """Each class's confidence threshold: its bias-corrected confidence average within [MIN, MAX]_THRESHOLD
    (MAX_THRESHOLD for a class the teacher has not given any pixel yet)."""
    _upgrade(sem)
    conf = torch.tensor(sem["conf"], dtype=torch.float32, device=device)
    weight = torch.tensor(sem["weight"], dtype=torch.float32, device=device)
    mean = torch.where(weight > 0, conf / weight.clamp_min(1e-12), torch.full_like(conf, MAX_THRESHOLD))
    return mean.clamp(MIN_THRESHOLD, MAX_THRESHOLD)


@dataclass
class Consistency:
    num_classes: int
    ignore_index: int
    weight: float = 1.0
    soft: bool = False       # train.semi_soft: pixels under their class's threshold teach too, with less weight

    def thresholds(self, sem: dict, device) -> torch.Tensor:
        return class_thresholds(sem, device)

    @torch.no_grad()
    def pseudo_labels(self, teacher, xw: torch.Tensor, pad: torch.Tensor, sem: dict, amp_dtype,
                      truth: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(labels, weights): the teacher's labels of the weak view where they pass their class's threshold, the
        ignore index elsewhere, and weights None; each class's confidence average is updated from this batch first
        (pixels that are not padding, by the class the teacher gives them). Soft (`self.soft`): every pixel that is
        not padding keeps its label, weighted 1 at or above its class's threshold and below it by a Gaussian of
        the distance, in units of the class's confidence spread (SoftMatch, Chen et al. 2023: the moving average
        of the squared confidence gives the spread). `truth` (benchmarks): the pixels' true classes, to count how
        many of the kept labels are right."""
        with torch.autocast(xw.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            probs = torch.softmax(teacher(xw).float(), 1)
        conf, label = probs.max(1)
        valid = pad != self.ignore_index
        k = self.num_classes
        _upgrade(sem)
        count = torch.bincount(label[valid], minlength=k).double().cpu()
        total = torch.bincount(label[valid], weights=conf[valid].double(), minlength=k).cpu()
        present = count > 0
        mean = torch.where(present, total / count.clamp_min(1), torch.zeros_like(total))
        def moving(name: str, value) -> None:      # a class absent from this batch keeps its average (no decay)
            old = torch.tensor(sem.get(name, [0.0] * k), dtype=torch.float64)
            sem[name] = torch.where(present, MOMENTUM * old + (1 - MOMENTUM) * value, old).tolist()
        moving("conf", mean)
        moving("weight", 1.0)
        tau = self.thresholds(sem, xw.device)
        keep = valid & (conf >= tau[label])
        weights = None
        if self.soft:
            square = torch.bincount(label[valid], weights=conf[valid].double() ** 2, minlength=k).cpu()
            moving("conf2", square / count.clamp_min(1))
            gathered = torch.tensor(sem["weight"], dtype=torch.float64).clamp_min(1e-12)
            m1 = torch.tensor(sem["conf"], dtype=torch.float64) / gathered
            var = (torch.tensor(sem["conf2"], dtype=torch.float64) / gathered - m1 ** 2).clamp_min(1e-4)
            below = torch.exp(-(conf - tau[label]) ** 2 / (2 * var.float().to(xw.device)[label]))
            weights = torch.where(keep, torch.ones_like(conf), below) * valid
        used = torch.bincount(label[keep], minlength=k)
        sem["used"] = [int(a + b) for a, b in zip(sem["used"], used.tolist())]
        sem["seen"] += int(valid.sum())
        sem["images"] += int(xw.shape[0])
        if truth is not None:
            known = valid & (truth != self.ignore_index) & (truth < k)
            right = keep & known & (label == truth)
            # by class: right, pseudo-labelled as the class (kept), truly the class (known); the totals are their sums
            by = [torch.bincount(v, minlength=k).tolist() for v in (label[right], label[keep & known], truth[known])]
            old = sem.get("truth_by_class")
            if old is None:
                old = [[0] * k for _ in range(3)]
                if "truth_right" in sem:    # a state saved with totals only: they carry on beside the class counts
                    sem["truth_before"] = [sem.pop(n) for n in ("truth_right", "truth_kept", "truth_known")]
            sem["truth_by_class"] = [[int(a + b) for a, b in zip(o, n)] for o, n in zip(old, by)]
            if os.environ.get(ORACLE_ENV):      # the upper bound of this scheme: right labels on every pixel
                return truth, None
        return torch.where(valid if self.soft else keep, label, torch.full_like(label, self.ignore_index)), weights

    def strong(self, x: torch.Tensor, y: torch.Tensor, seed: int, weights: torch.Tensor | None = None):
        """(image, labels, weights): colour jitter and noise per image, then CutMix: a box of each image (and its
        labels and their weights, if any) from the next image of the batch. Drawn from `seed` alone (the step), so
        a resumed run repeats it exactly."""
        g = torch.Generator().manual_seed(seed)
        n, c, h, w = x.shape
        bright = (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.8
        contrast = 0.6 + torch.rand(n, 1, 1, 1, generator=g) * 0.8
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        noise = torch.randn(x.shape, generator=g) * 0.1
        xs = (x - mean) * contrast.to(x.device) + mean + bright.to(x.device) + noise.to(x.device)
        ys, ws = y.clone(), None if weights is None else weights.clone()
        if n > 1:
            for i in range(n):
                side = float(torch.empty(1).uniform_(0.25, 0.5, generator=g))
                bh, bw = max(1, int(h * side)), max(1, int(w * side))
                y0 = int(torch.randint(0, h - bh + 1, (1,), generator=g))
                x0 = int(torch.randint(0, w - bw + 1, (1,), generator=g))
                j = (i + 1) % n
                xs[i, :, y0:y0 + bh, x0:x0 + bw] = x[j, :, y0:y0 + bh, x0:x0 + bw]
                ys[i, y0:y0 + bh, x0:x0 + bw] = y[j, y0:y0 + bh, x0:x0 + bw]
                if ws is not None:
                    ws[i, y0:y0 + bh, x0:x0 + bw] = weights[j, y0:y0 + bh, x0:x0 + bw]
        return xs, ys, ws

    def loss(self, logits: torch.Tensor, ys: torch.Tensor, ws: torch.Tensor | None = None) -> torch.Tensor:
        """The mean cross-entropy over the labelled pixels, or with weights their weighted mean."""
        if (ys == self.ignore_index).all():
            return logits.sum() * 0.0          # nothing confident yet: no signal, but the graph stays whole (DDP)
        if ws is None:
            return self.weight * F.cross_entropy(logits.float(), ys, ignore_index=self.ignore_index)
        ce = F.cross_entropy(logits.float(), ys, ignore_index=self.ignore_index, reduction="none")
        return self.weight * (ce * ws).sum() / ws.sum().clamp_min(1e-6)


def history_fields(sem: dict | None) -> dict:
    """For the history row: the share of unlabelled pixels learned from since the row before, and with a truth
    folder the share of those pseudo-labels that were right (this rank's; the marks live in the state)."""
    if not sem or not sem.get("seen"):
        return {}
    used, seen = sum(sem["used"]), sem["seen"]
    mark = sem.get("mark") or [0, 0, 0, 0, 0]
    out = {}
    if seen > mark[1]:
        out["unlabelled_used"] = round((used - mark[0]) / (seen - mark[1]), 4)
    right, kept, known = truth_totals(sem)
    if known > mark[4]:
        out["pseudo_accuracy"] = round((right - mark[2]) / max(kept - mark[3], 1), 4)
        out["pseudo_coverage"] = round((kept - mark[3]) / (known - mark[4]), 4)
    sem["mark"] = [used, seen, right, kept, known]
    return out


def truth_totals(sem: dict) -> tuple[int, int, int]:
    """Pseudo-labels right, kept and with a known truth, over all classes: the sums of `truth_by_class`'s rows
    (a state saved before the counts were kept by class has totals only: as saved, then added to them)."""
    if sem.get("truth_by_class"):
        before = sem.get("truth_before") or (0, 0, 0)
        return tuple(int(sum(row)) + b for row, b in zip(sem["truth_by_class"], before))
    return sem.get("truth_right", 0), sem.get("truth_kept", 0), sem.get("truth_known", 0)


def summary(sem: dict | None, class_names) -> dict | None:
    """metrics.json's "unlabelled": how many images were drawn, the share of their pixels that passed the
    thresholds (overall and per predicted class) and the thresholds at the end; with a truth folder (benchmarks)
    how right the pseudo-labels were, overall and per class."""
    if not sem or not sem.get("seen"):
        return None
    seen = sem["seen"]
    thresholds = class_thresholds(sem).tolist()
    right, kept, known = truth_totals(sem)
    return {"images_drawn": int(sem["images"]), "from_step": sem.get("start_step", 0), "pixels_seen": int(seen),
            "used_share": round(sum(sem["used"]) / seen, 4),
            "used_share_by_class": {n: round(u / seen, 5) for n, u in zip(class_names, sem["used"])},
            "thresholds": {n: round(t, 4) for n, t in zip(class_names, thresholds)}} | (
        {"pseudo_accuracy": round(right / max(kept, 1), 4), "pseudo_coverage": round(kept / known, 4)}
        | _by_class(sem.get("truth_by_class"), class_names) if known else {})


def _by_class(counts, class_names) -> dict:
    """Per class, against the hidden masks: precision (of the pixels pseudo-labelled as the class, the share truly
    it) and recall (of the pixels truly the class, the share pseudo-labelled as it), and their means over the classes
    that have any; the overall accuracy alone is mostly the dominant class's."""
    if not counts:
        return {}
    right, kept, true = counts
    by = {n: {"precision": round(r / p, 4) if p else None, "recall": round(r / t, 4) if t else None}
          for n, r, p, t in zip(class_names, right, kept, true)}
    prec = [v["precision"] for v in by.values() if v["precision"] is not None]
    rec = [v["recall"] for v in by.values() if v["recall"] is not None]
    return {"pseudo_by_class": by,
            "pseudo_class_precision": round(sum(prec) / len(prec), 4) if prec else None,
            "pseudo_class_recall": round(sum(rec) / len(rec), 4) if rec else None}
