"""One evaluation pass, shared by validation during training, `evaluate`, `tune-threshold` and the report.

    evaluate_split(model, loader, device, [collector, ...])

runs the model over a split and hands every image's `Prediction` (its logits resized back to the mask's
ORIGINAL resolution, the mask, the label map) to each collector: a confusion matrix, a threshold sweep, the
report's per-image/gallery/calibration collector. Metrics are always computed on the original pixels, the
way `predict` resizes its output, so every route to a number agrees with every other.

`label_maps` is the other source of predictions: <stem>.png label maps written by any model, checked and
paired with their ground truth.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from pixelseg.data.prefetch import prefetched
from pixelseg.errors import PixelsegError
from pixelseg.measure.metrics import ConfusionMatrix, summarize
from pixelseg.models.outputs import labels_from_logits
from pixelseg.models.outputs import resize_logits
from pixelseg.models.windows import whole_fits, windowed_log_probs


class Prediction:
    """One image of the split: `logits` 1 x K x H x W (float32) at the mask's size, `mask` H x W on the model's
    device, `index` its position in the dataset. `labels` (argmax, or the sigmoid threshold of a one-channel
    model) is computed once, on first use."""

    def __init__(self, index: int, logits: torch.Tensor, mask: torch.Tensor):
        self.index, self.logits, self.mask = index, logits, mask
        self._labels = None

    @property
    def labels(self) -> torch.Tensor:
        if self._labels is None:
            self._labels = labels_from_logits(self.logits)[0]
        return self._labels


Collector = Callable[[Prediction], None]


def confusion_collector(cm: ConfusionMatrix) -> Collector:
    return lambda p: cm.update(p.labels, p.mask)


def evaluate_split(model, loader, device, collectors: list[Collector], amp_dtype=None,
                   progress: Callable[[int], None] | None = None, window: tuple[int, int] | None = None) -> None:
    """Every image of `loader` (EvalDataset batches: inputs, masks at their own sizes, indices) through `model`,
    each Prediction handed to every collector; `progress(images done)` after each batch. `window`
    (eval_window: the training crop of a run trained at a scale): inputs over the device's whole-image
    budget are scored by sliding windows of that size, as predict does, instead of in one piece.

    A model trained in channels_last is evaluated in the contiguous format that load/predict use: NHWC
    convolutions round differently (~1e-5), which would flip near-tie pixels and make the training metric
    disagree with `pixelseg evaluate` on the same weights. The switch happens outside inference mode, or
    the parameters would become inference tensors that training cannot use afterwards.
    """
    module = isinstance(model, torch.nn.Module)      # else a callable, such as an exported model's backend
    if module:
        model.eval()
    nhwc = module and any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
                          for p in model.parameters())
    if nhwc:
        with torch.no_grad():
            model.to(memory_format=torch.contiguous_format)
    done = 0
    try:
        with torch.inference_mode(), prefetched(loader) as batches:   # the next batches decode while one is scored
            for x, masks, idx in batches:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    x = x.to(device, non_blocking=True)
                    if window is None or whole_fits(x.shape[-2], x.shape[-1], device):
                        logits = model(x)
                    else:     # trained at a scale, too big to score whole: the training crop slides over it
                        logits = windowed_log_probs(model, x, window).to(device)   # blended on the CPU
                for i, (mask, j) in enumerate(zip(masks, idx)):
                    p = Prediction(j, resize_logits(logits[i:i + 1].float(), tuple(mask.shape)), mask.to(device))
                    for collect in collectors:
                        collect(p)
                done += len(masks)
                if progress is not None:
                    progress(done)
    finally:
        if nhwc:
            with torch.no_grad():
                model.to(memory_format=torch.channels_last)


def confusion_matrix(model, loader, num_classes: int, ignore_index: int, device, amp_dtype=None,
                     per_image: bool = False, window: tuple[int, int] | None = None) -> ConfusionMatrix:
    """The split's confusion matrix; with `per_image` it also keeps one matrix per image (for intervals).
    `window`: evaluate_split's."""
    cm = ConfusionMatrix(num_classes, ignore_index, per_image=per_image)
    evaluate_split(model, loader, device, [confusion_collector(cm)], amp_dtype, window=window)
    return cm


def eval_window(preprocessing) -> tuple[int, int] | None:
    """The sliding window evaluate_split uses for a run's images too big to score whole: the training crop of
    a run trained at a scale; None for a whole-image run (its input is always the training size)."""
    return tuple(preprocessing.image_size) if preprocessing.resize == "scale" else None


class PixelSample:
    """A collector keeping the logits and labels of up to `per_image` labelled pixels of each image, drawn with
    `seed`: what a temperature is fitted on (uncertainty.fit_temperature) without holding a split's logits."""

    def __init__(self, ignore_index: int, per_image: int, seed: int = 0):
        self.ignore_index, self.per_image = ignore_index, max(1, int(per_image))
        self.gen = torch.Generator().manual_seed(seed)
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def __call__(self, p: Prediction) -> None:
        mask = p.mask.reshape(-1).cpu()
        keep = (mask != self.ignore_index).nonzero()[:, 0]
        if len(keep) > self.per_image:
            keep = keep[torch.randperm(len(keep), generator=self.gen)[:self.per_image]]
        self.logits.append(p.logits[0].flatten(1).cpu()[:, keep])
        self.labels.append(mask[keep].long())

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(K x P x 1 logits, P x 1 labels): the sampled pixels as one 'image' for uncertainty's functions."""
        k = self.logits[0].shape[0] if self.logits else 1
        x = torch.cat(self.logits, 1) if self.logits else torch.zeros(k, 0)
        y = torch.cat(self.labels) if self.labels else torch.zeros(0, dtype=torch.long)
        return x[:, :, None], y[:, None]


CI_LEVEL, CI_BOOT, CI_SEED = 0.95, 1000, 0


def add_intervals(summary: dict, per_image_mats, level: float = CI_LEVEL, n_boot: int = CI_BOOT,
                  seed: int = CI_SEED) -> dict:
    """`summary` (metrics.summarize) with bootstrap intervals over images added beside the values it already
    has: "mIoU_ci", "pixel_accuracy_ci" and per class "iou_ci" as [low, high] (None where undefined), and
    "ci" saying how they were made. Existing keys are left as they are. Deterministic for `seed`."""
    from pixelseg.measure.stats import bootstrap_ci

    mats = np.asarray(per_image_mats)
    if mats.ndim != 3 or len(mats) == 0:
        return summary
    b = bootstrap_ci(mats, n_boot=n_boot, level=level, seed=seed)

    def pair(e: dict):
        return None if e["low"] is None else [e["low"], e["high"]]
    summary["mIoU_ci"] = pair(b["mIoU"])
    summary["pixel_accuracy_ci"] = pair(b["pixel_accuracy"])
    for c, e in zip(summary["per_class"].values(), b["per_class_iou"]):
        c["iou_ci"] = pair(e)
    summary["ci"] = {"level": level, "method": "bootstrap over images", "n_boot": int(n_boot), "seed": seed}
    return summary


def summarize_with_ci(cm: ConfusionMatrix, class_names) -> dict:
    """metrics.summarize of `cm`, plus intervals when it kept per-image matrices that add up to its total
    (under torchrun, after ConfusionMatrix.all_reduce has gathered every rank's images)."""
    total = cm.matrix
    s = summarize(total, class_names)
    if cm.keep_per_image:
        mats = cm.per_image
        if len(mats) and np.array_equal(mats.sum(0), total):
            add_intervals(s, mats)
    return s


def split_loader(samples, classes, preprocessing, mask_color_channel=None, batch_size: int = 1,
                 num_workers: int = 0):
    """A loader over `samples` preprocessed the way a run was trained (RunInfo.preprocessing). A run trained at
    a scale sees each image at its own scaled size, so its batches hold one image."""
    from torch.utils.data import DataLoader

    from pixelseg.data.dataset import EvalDataset, eval_collate
    from pixelseg.data.transforms import eval_transform

    pre = preprocessing
    ds = EvalDataset(samples, classes.num_classes, classes.ignore_index, pre.in_channels, pre.mean, pre.std,
                     eval_transform(pre.image_size, pre.scale), mask_color_channel)
    return DataLoader(ds, batch_size=1 if pre.resize == "scale" else batch_size, collate_fn=eval_collate,
                      num_workers=num_workers)


def label_maps(pred_dir, index, samples, split: str) -> Iterator[tuple[int, object, np.ndarray, np.ndarray]]:
    """(position, sample, prediction, ground truth) as int64 arrays for the <stem>.png label map of every
    sample in `pred_dir`. The folder is checked now; each file when it is reached (one-line errors)."""
    return _label_maps(prediction_folder(pred_dir), index, samples, split)


def prediction_folder(pred_dir) -> Path:
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise PixelsegError(f"{pred_dir}: prediction folder not found; give the folder of <stem>.png label maps")
    return pred_dir


def _label_maps(pred_dir: Path, index, samples, split: str):
    from pixelseg.data.io import open_image
    from pixelseg.data.labels import load_mask
    from pixelseg.viz.overlay import read_label_png

    k = index.classes.num_classes
    for i, s in enumerate(samples):
        p = pred_dir / f"{s.stem}.png"
        if not p.is_file():
            raise PixelsegError(f"{p}: no prediction for {s.image.name}; predict every image of split '{split}'")
        open_image(p, "label map").close()      # the decode gate: a map that claims 10^10 pixels is refused first
        pred = read_label_png(p).astype(np.int64)
        gt = load_mask(s, index.mask_color_channel).astype(np.int64)
        if pred.shape != gt.shape:
            raise PixelsegError(f"{p}: prediction is {pred.shape[1]}x{pred.shape[0]}, ground truth {s.mask.name} is "
                                f"{gt.shape[1]}x{gt.shape[0]}; predictions must be at the original size")
        if pred.max(initial=0) >= k:
            raise PixelsegError(f"{p}: holds class index {int(pred.max())} but {index.root} has {k} classes")
        yield i, s, pred, gt
