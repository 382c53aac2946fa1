"""Segmentation metrics: a streaming confusion matrix and pure functions over it.

The confusion matrix is the only state: K x K int64, rows = ground truth, columns = prediction, filled with
``torch.bincount`` on the batch's own device as in torchvision's references (one matrix per image too, on request)
and summed across ranks with one all-reduce. Every metric is a pure function of it, recomputable without the model.

Conventions (quoted in the README):

- Pixels whose ground truth is the ignore index (255 by default) are not counted anywhere.
  A ground-truth value that is neither a class index 0..K-1 nor the ignore index is an error,
  as is a predicted value outside 0..K-1.
- IoU = TP / (TP + FP + FN), accuracy = recall = TP / ground-truth pixels,
  dice = 2 TP / (ground-truth pixels + predicted pixels), per class.
- A class absent from BOTH the ground truth and the prediction has IoU, dice and accuracy
  undefined (NaN, ``None`` in JSON); it is left out of every mean and listed in ``classes_absent``.
- A class present in the prediction only has IoU 0 and dice 0, and these zeros count in the means (a false
  alarm is a mistake). Its accuracy (recall) is undefined, because it has no ground-truth pixel, and it is
  left out of the mean accuracy.
- Means (mIoU, mean accuracy, mean dice) are unweighted means over the classes where the metric is defined.
  Pixel accuracy is over all non-ignored pixels. Frequency-weighted IoU weights each class's IoU by its share
  of the ground-truth pixels.
- An empty matrix (no counted pixel) gives NaN for every metric, without a warning.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np
import torch

from pixelseg.errors import PixelsegError

__all__ = [
    "ConfusionMatrix", "per_image_confusion", "iou", "class_accuracy", "dice", "pixel_accuracy", "mean_iou",
    "mean_accuracy", "fw_iou", "mean_dice", "summarize", "format_table", "ThresholdSweep",
]


def _as_label_tensor(x, what: str, device=None) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise PixelsegError(f"{what} must be a torch tensor or numpy array of class indices, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise PixelsegError(f"{what} must hold integer class indices, got dtype {x.dtype} "
                            "(for logits take .argmax(1) first)")
    if x.dtype in (torch.uint16, torch.uint32, torch.uint64):    # few torch kernels take them (aminmax does not)
        x = x.to(torch.int32 if x.dtype == torch.uint16 else torch.int64)
    # otherwise its own dtype: converting a uint8 mask to int64 would cost more than the counting
    return x if device is None else x.to(device, non_blocking=True)


def _show(values: torch.Tensor, limit: int = 10) -> str:
    vals = torch.unique(values).cpu().tolist()
    more = f" and {len(vals) - limit} more" if len(vals) > limit else ""
    return ", ".join(str(v) for v in vals[:limit]) + more


def _checked_counts(p: torch.Tensor, t: torch.Tensor, k: int, ignore: int) -> torch.Tensor:
    """K x K counts of one flat image, checking every counted pixel: the slow path, taken only when the
    fast one cannot prove the input valid (an error to name, a prediction out of range at ignored pixels)."""
    keep = t != ignore
    t, p = t[keep].long(), p[keep].long()
    bad_t, bad_p = (t < 0) | (t >= k), (p < 0) | (p >= k)
    if bool(bad_t.any()):
        raise PixelsegError(f"target value(s) {_show(t[bad_t])} are not class indices 0..{k - 1} nor the "
                            f"ignore index {ignore}; fix the masks or the class table")
    if bool(bad_p.any()):
        raise PixelsegError(f"prediction value(s) {_show(p[bad_p])} are outside the class indices 0..{k - 1}; "
                            "the model's number of outputs does not match the class table")
    return torch.bincount(k * t + p, minlength=k * k).reshape(k, k)


def _counts(pred, target, k: int, ignore: int, per_image: bool) -> torch.Tensor:
    """Counts of a batch: K x K, or N x K x K, one per image (dim 0 of an N x ... batch). Fast path: the min and
    max of both maps (one host sync) show each prediction is a class and each target a class or <= the ignore
    index; then target * K + pred (int16 when it fits) is bincounted, ignored pixels in rows K..: no mask."""
    device = next((x.device for x in (pred, target) if isinstance(x, torch.Tensor)), None)
    p, t = _as_label_tensor(pred, "pred", device), _as_label_tensor(target, "target", device)
    if tuple(p.shape) != tuple(t.shape):
        raise PixelsegError(f"pred and target must have the same shape, got {tuple(p.shape)} and {tuple(t.shape)}")
    n = p.shape[0] if per_image and p.dim() >= 3 else 1
    if p.numel() == 0:
        return torch.zeros((n, k, k) if per_image else (k, k), dtype=torch.int64, device=p.device)
    p, t = p.reshape(n, -1), t.reshape(n, -1)
    p_lo, p_hi, t_lo, t_hi = torch.stack([*torch.aminmax(p), *torch.aminmax(t)]).tolist()
    rows = max(t_hi + 1, k)
    if p_lo >= 0 and p_hi < k and t_lo >= 0 and (t_hi < k or t_hi == ignore) and rows * k <= 1 << 24:
        dt, span = (torch.int16 if rows * k <= 1 << 15 else torch.int32), rows * k

        def index(a, b):            # target * K + pred, in dt
            return a.to(dt, copy=True).mul_(k).add_(b if torch.promote_types(b.dtype, dt) == dt else b.to(dt))
        if p.device.type == "cpu":  # 2M pixels at a time: the temporaries stay in the cache (2x faster)
            c = torch.stack([sum(torch.bincount(index(a, b), minlength=span) for a, b in
                                 zip(ti.split(1 << 21), pi.split(1 << 21))) for ti, pi in zip(t, p)])
        else:  # one call for all images: a CUDA bincount waits for the host to learn its min and max
            idx = index(t, p).to(torch.int64 if n * span >= 1 << 31 else torch.int32)
            idx += torch.arange(n, device=idx.device, dtype=idx.dtype)[:, None] * span
            c = torch.bincount(idx.reshape(-1), minlength=n * span)
        c = c.reshape(n, rows, k)
        # a row between K and the ignore index is a target value that is neither: let the slow path name it
        if rows <= k + 1 or not bool(c[:, k:-1].any()):
            return c[:, :k] if per_image else c[0, :k]
    mats = [_checked_counts(p[i], t[i], k, ignore) for i in range(n)]
    return torch.stack(mats) if per_image else mats[0]


def per_image_confusion(pred, target, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """One K x K matrix per image of an N x H x W batch (a 2-D map is one image): N x K x K int64, with
    the checks and conventions of ConfusionMatrix.update. The input of stats.bootstrap_ci."""
    return ConfusionMatrix(num_classes, ignore_index, per_image=True).update(pred, target).per_image


class ConfusionMatrix:
    """Streaming K x K confusion matrix (rows = ground truth, columns = prediction).

    ``update`` may be called with batches on any device; the running matrix stays on the device
    of the first batch so a GPU evaluation loop does not copy every batch to the host. With
    ``per_image=True`` it also keeps one matrix per image (dim 0 of each N x H x W batch; a 2-D map is
    one image) for a bootstrap over images; ``all_reduce`` sums the total and gathers those.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, per_image: bool = False):
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
            raise PixelsegError(f"num_classes must be a positive integer, got {num_classes!r}")
        if 0 <= ignore_index < num_classes:
            raise PixelsegError(f"ignore_index {ignore_index} is also a class index (0..{num_classes - 1}); "
                                "choose an ignore_index outside the class range (255 is the convention)")
        self.num_classes, self.ignore_index, self.keep_per_image = int(num_classes), int(ignore_index), bool(per_image)
        self._mat: torch.Tensor | None = None
        self._images: list[torch.Tensor] = []

    def update(self, pred, target) -> "ConfusionMatrix":
        """Count one batch. ``pred`` and ``target`` are same-shape integer label maps (torch tensors on
        any device, or numpy arrays). Pixels whose target is the ignore index are skipped."""
        c = _counts(pred, target, self.num_classes, self.ignore_index, self.keep_per_image)
        if self.keep_per_image:
            self._images.append(c)
            c = c.sum(0)
        self._mat = c if self._mat is None else self._mat + c.to(self._mat.device)
        return self

    @property
    def matrix(self) -> np.ndarray:
        """The K x K int64 matrix as a numpy copy (rows = ground truth, columns = prediction)."""
        if self._mat is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return self._mat.detach().cpu().numpy().astype(np.int64, copy=True)

    @property
    def per_image(self) -> np.ndarray:
        """N x K x K int64, one matrix per image counted so far (needs ``per_image=True``)."""
        if not self.keep_per_image:
            raise ValueError("this ConfusionMatrix keeps no per-image matrices; create it with per_image=True")
        mats = [m.cpu() for m in self._images] or [torch.zeros(0, self.num_classes, self.num_classes)]
        return torch.cat(mats).numpy().astype(np.int64, copy=False)

    def reset(self) -> None:
        self._mat, self._images = None, []

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) into a "
                             f"{self.num_classes}-class one (ignore {self.ignore_index})")
        if self.keep_per_image and not other.keep_per_image:
            raise ValueError("cannot merge a matrix without per-image matrices into one that keeps them")
        self._images += other._images if self.keep_per_image else []
        if other._mat is not None:
            self._mat = other._mat.clone() if self._mat is None else self._mat + other._mat.to(self._mat.device)
        return self

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum the matrix over all torch.distributed ranks (every rank must call it); no-op when not
        running distributed. Afterwards every rank holds the global matrix and, with ``per_image=True``,
        every image's matrix in the split's order (collective.py), so intervals match one process's."""
        from pixelseg.measure.collective import gather_strided, is_distributed, sum_matrix
        if not is_distributed():
            return self
        home = self._mat.device if self._mat is not None else torch.device("cpu")
        self._mat = sum_matrix(self._mat, self.num_classes, home)
        if self.keep_per_image:
            self._images = gather_strided(self._images, self.num_classes, home)
        return self

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, " \
               f"pixels={int(self.matrix.sum())})"


# ---------------------------------------------------------------- pure functions over a K x K matrix

def _cm(cm) -> np.ndarray:
    if isinstance(cm, ConfusionMatrix):
        cm = cm.matrix
    elif isinstance(cm, torch.Tensor):
        cm = cm.detach().cpu().numpy()
    m = np.asarray(cm, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square K x K confusion matrix, got shape {m.shape}")
    return m


def _nanmean(x: np.ndarray) -> float:
    # np.nanmean warns on an all-NaN input; an empty evaluation is NaN, quietly.
    v = x[~np.isnan(x)]
    return float(v.mean()) if v.size else math.nan


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def iou(cm) -> np.ndarray:
    """Per-class IoU TP / (TP + FP + FN); NaN for a class absent from ground truth and prediction."""
    m = _cm(cm)
    tp = np.diag(m)
    return _divide(tp, m.sum(1) + m.sum(0) - tp)


def class_accuracy(cm) -> np.ndarray:
    """Per-class accuracy (recall) TP / ground-truth pixels; NaN for a class with no ground-truth pixel."""
    m = _cm(cm)
    return _divide(np.diag(m), m.sum(1))


def dice(cm) -> np.ndarray:
    """Per-class dice (F1) 2 TP / (ground-truth + predicted pixels); NaN for a class absent from both."""
    m = _cm(cm)
    return _divide(2.0 * np.diag(m), m.sum(1) + m.sum(0))


def pixel_accuracy(cm) -> float:
    m = _cm(cm)
    total = m.sum()
    return float(np.trace(m) / total) if total > 0 else math.nan


def mean_iou(cm) -> float:
    return _nanmean(iou(cm))


def mean_accuracy(cm) -> float:
    return _nanmean(class_accuracy(cm))


def mean_dice(cm) -> float:
    return _nanmean(dice(cm))


def fw_iou(cm) -> float:
    """Frequency-weighted IoU: sum over classes of (ground-truth share) x IoU."""
    m = _cm(cm)
    gt = m.sum(1)
    total = gt.sum()
    if total <= 0:
        return math.nan
    present = gt > 0  # every class with ground truth has a defined IoU
    return float(np.sum(gt[present] / total * iou(m)[present]))


def _json_float(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def summarize(cm, class_names: Sequence[str]) -> dict:
    """JSON-ready summary: means, pixel count, absent classes and per-class metrics.
    Floats are Python floats in [0, 1]; undefined values are ``None``; pixel counts are ints."""
    m = _cm(cm)
    names = [str(n) for n in class_names]
    if len(names) != m.shape[0]:
        raise PixelsegError(f"{len(names)} class names for a {m.shape[0]}-class confusion matrix")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise PixelsegError(f"class names must be unique; repeated: {', '.join(dup)}")
    ious, accs, dices = iou(m), class_accuracy(m), dice(m)
    gt, pred = m.sum(1), m.sum(0)
    return {
        "mIoU": _json_float(mean_iou(m)),
        "pixel_accuracy": _json_float(pixel_accuracy(m)),
        "mean_accuracy": _json_float(mean_accuracy(m)),
        "fw_iou": _json_float(fw_iou(m)),
        "mean_dice": _json_float(mean_dice(m)),
        "num_pixels": int(m.sum()),
        "classes_absent": [n for n, g, p in zip(names, gt, pred) if g == 0 and p == 0],
        "per_class": {
            n: {"iou": _json_float(ious[i]), "accuracy": _json_float(accs[i]), "dice": _json_float(dices[i]),
                "gt_pixels": int(gt[i]), "pred_pixels": int(pred[i])}
            for i, n in enumerate(names)
        },
    }


def format_table(summary: dict, title: str | None = None):
    """A rich Table of a ``summarize`` result: one row per class, then the means."""
    from rich.table import Table

    def pct(v):
        return "—" if v is None else f"{100.0 * v:.1f}"

    absent = set(summary.get("classes_absent", []))
    total = summary.get("num_pixels", 0)
    table = Table(title=title, caption="values in %; — = undefined. Absent classes (in neither ground truth nor "
                                       "prediction) are left out of the means", caption_justify="left")
    table.add_column("class")
    for col in ("IoU", "accuracy", "dice", "GT share"):
        table.add_column(col, justify="right")
    for name, c in summary["per_class"].items():
        if name in absent:
            table.add_row(f"{name} (absent)", "—", "—", "—", "—", style="dim")
            continue
        label = f"{name} (not in GT)" if c["gt_pixels"] == 0 else name
        share = f"{100.0 * c['gt_pixels'] / total:.1f}" if total else "—"
        table.add_row(label, pct(c["iou"]), pct(c["accuracy"]), pct(c["dice"]), share)
    table.add_section()
    table.add_row("mean", pct(summary["mIoU"]), pct(summary["mean_accuracy"]), pct(summary["mean_dice"]), "",
                  style="bold")
    table.add_row("pixel accuracy", "", pct(summary["pixel_accuracy"]), "", f"{total:,} px")
    table.add_row("freq.-weighted IoU", pct(summary["fw_iou"]), "", "", "")
    return table


# ---------------------------------------------------------------- one sigmoid channel (data.binary_sigmoid)

class ThresholdSweep:
    """The 2-class mIoU of a one-channel model at every threshold k/bins, from a single pass: histograms of
    the predicted foreground probability over the labelled background and foreground pixels. The
    threshold that maximizes it on the validation set is the one to predict with."""

    def __init__(self, ignore_index: int = 255, bins: int = 100):
        self.ignore_index, self.bins = int(ignore_index), int(bins)
        self.hist = torch.zeros(2, self.bins, dtype=torch.int64)    # [background, foreground] x probability bin

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """logits N x 1 x H x W (or N x H x W), target N x H x W with values 0, 1 or the ignore index."""
        x = logits[:, 0] if logits.dim() == 4 else logits
        if tuple(x.shape) != tuple(target.shape):
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match (N x H x W)")
        t = target.to(x.device)
        keep = t != self.ignore_index
        t = t[keep].long()
        if bool(((t != 0) & (t != 1)).any()):
            raise PixelsegError(f"target values {_show(t[(t != 0) & (t != 1)])} are not 0/1 nor the ignore index "
                                f"{self.ignore_index}; a threshold sweep needs binary masks")
        b = (torch.sigmoid(x[keep].float()) * self.bins).long().clamp_(0, self.bins - 1)
        self.hist += torch.bincount(t * self.bins + b, minlength=2 * self.bins).reshape(2, self.bins).cpu()

    def miou(self) -> tuple[np.ndarray, np.ndarray]:
        """(thresholds, mIoU at each): a pixel is foreground when its probability is at or above the
        lower edge of its bin, so threshold k/bins counts bins k.. as foreground."""
        h = self.hist.numpy().astype(np.float64)
        fg_above = np.cumsum(h[1][::-1])[::-1]          # foreground pixels predicted foreground at threshold k
        bg_above = np.cumsum(h[0][::-1])[::-1]          # background pixels predicted foreground
        fg, bg = h[1].sum(), h[0].sum()
        tp_fg, fp_fg, fn_fg = fg_above, bg_above, fg - fg_above
        tp_bg, fp_bg, fn_bg = bg - bg_above, fn_fg, bg_above
        with np.errstate(invalid="ignore", divide="ignore"):
            iou_fg = tp_fg / (tp_fg + fp_fg + fn_fg)
            iou_bg = tp_bg / (tp_bg + fp_bg + fn_bg)
        both = np.stack([iou_bg, iou_fg])
        n = (~np.isnan(both)).sum(0)   # a class with no pixel on either side is left out, as in mean_iou
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.arange(self.bins) / self.bins, np.where(n > 0, np.nansum(both, 0) / n, np.nan)

    def best(self) -> tuple[float, float]:
        """(threshold, its mIoU); 0.5 when nothing was counted."""
        th, m = self.miou()
        if self.hist.sum() == 0 or np.isnan(m[1:]).all():
            return 0.5, float("nan")
        k = int(np.nanargmax(m[1:])) + 1    # threshold 0 ("everything is foreground") is never a real choice
        return float(th[k]), float(m[k])
