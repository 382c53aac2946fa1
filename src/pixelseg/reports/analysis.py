"""One pass over a validation split that gathers everything a report shows.

The pass is an evaluation (the same dataset, resize and argmax as `pixelseg evaluate`, so its
confusion matrix equals the one in metrics.json) that also keeps, at little extra cost:

- a per-image confusion matrix -> per-image mIoU and pixel accuracy, to rank the images;
- the label maps (and confidence maps) of only the N worst and N best images, in two bounded heaps,
  so memory does not grow with the split;
- a histogram of the softmax confidence (max probability) of every counted pixel with the share of
  correct pixels per bin -> reliability diagram, expected calibration error, share of unsure pixels.

Label conventions are the package's (measure/metrics.py): ignore pixels are counted nowhere, a class absent
from both ground truth and prediction of an image is left out of that image's mIoU.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from pixelseg.data.classes import ClassTable
from pixelseg.data.index import Sample
from pixelseg.errors import PixelsegError
from pixelseg.measure.metrics import ConfusionMatrix, mean_iou, pixel_accuracy, summarize

CALIBRATION_BINS = 15          # the usual choice for ECE (Guo et al. 2017)
UNSURE_BELOW = 0.5             # a pixel whose top class has less than this probability is "unsure"
GALLERY_SIZE = 6               # worst and best images shown by default


@dataclass
class GalleryItem:
    index: int                 # position in the split
    sample: Sample             # image and mask paths (and how the mask decodes to class indices)
    miou: float
    pixel_accuracy: float
    pred: np.ndarray           # HxW class indices at the mask's size
    confidence: np.ndarray | None = None   # HxW float16 max softmax probability (None for label maps)


@dataclass
class Analysis:
    classes: ClassTable
    split: str
    data_root: str
    source: str                # the run folder or the prediction folder
    confusion: np.ndarray      # K x K int64, rows = ground truth, columns = prediction
    per_image: list[dict]      # {"stem", "mIoU", "pixel_accuracy", "pixels", "unsure"} in split order
    worst: list[GalleryItem]
    best: list[GalleryItem]
    calibration: dict | None   # None when only label maps were given (no probabilities)
    seconds: float
    mask_color_channel: int | None = None
    per_image_mats: np.ndarray | None = None   # N x K x K, one confusion matrix per image: the intervals
    # with a stored temperature: the reliability data of the raw (T = 1) probabilities, `calibration` being
    # those the run now reports (logits / T)
    calibration_before: dict | None = None
    temperature: float = 1.0

    @property
    def summary(self) -> dict:
        s = summarize(self.confusion, self.classes.names)
        if self.per_image_mats is not None:
            from pixelseg.measure.evaluation import add_intervals
            add_intervals(s, self.per_image_mats)
        return s

    def to_json(self) -> dict:
        """What RUN/report/analysis.json holds: enough to redraw every plot without the model."""
        return {"split": self.split, "data": self.data_root, "source": self.source, "images": len(self.per_image),
                "classes": self.classes.to_dict(), "summary": self.summary,
                "confusion_matrix": self.confusion.tolist(), "calibration": self.calibration,
                "calibration_before": self.calibration_before, "temperature": self.temperature,
                "per_image": self.per_image,
                "worst": [g.sample.stem for g in self.worst], "best": [g.sample.stem for g in self.best],
                "seconds": round(self.seconds, 3)}


@dataclass
class _Calibration:
    bins: int = CALIBRATION_BINS
    threshold: float = UNSURE_BELOW
    count: torch.Tensor | None = None
    conf_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    unsure: int = 0
    unsure_correct: int = 0

    def update(self, conf: torch.Tensor, correct: torch.Tensor) -> None:
        b = (conf * self.bins).long().clamp_(0, self.bins - 1)
        # float64 sums: millions of float32 additions would drift in the 4th digit
        count = torch.bincount(b, minlength=self.bins).double()
        csum = torch.bincount(b, weights=conf.double(), minlength=self.bins)
        ok = torch.bincount(b, weights=correct.double(), minlength=self.bins)
        if self.count is None:
            self.count, self.conf_sum, self.correct = count.cpu(), csum.cpu(), ok.cpu()
        else:
            self.count += count.cpu()
            self.conf_sum += csum.cpu()
            self.correct += ok.cpu()
        low = conf < self.threshold
        self.unsure += int(low.sum())
        self.unsure_correct += int((low & correct).sum())

    def to_dict(self) -> dict | None:
        if self.count is None:
            return None
        n = self.count.numpy()
        total = float(n.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            conf = np.where(n > 0, self.conf_sum.numpy() / np.maximum(n, 1), np.nan)
            acc = np.where(n > 0, self.correct.numpy() / np.maximum(n, 1), np.nan)
        gap = np.where(n > 0, np.abs(acc - conf), 0.0)
        ece = float(np.sum(gap * n) / total) if total else math.nan
        sure = total - self.unsure
        correct_all = float(self.correct.sum())

        def num(x):
            return None if x is None or not math.isfinite(x) else float(x)
        return {
            "bins": self.bins, "edges": np.linspace(0, 1, self.bins + 1).round(6).tolist(),
            "count": [int(v) for v in n], "confidence": [num(v) for v in conf], "accuracy": [num(v) for v in acc],
            "ece": num(ece), "pixels": int(total),
            "mean_confidence": num(float(self.conf_sum.sum()) / total if total else math.nan),
            "accuracy_all": num(correct_all / total if total else math.nan),
            "unsure_threshold": self.threshold,
            "unsure_share": num(self.unsure / total if total else math.nan),
            "unsure_accuracy": num(self.unsure_correct / self.unsure if self.unsure else math.nan),
            "sure_accuracy": num((correct_all - self.unsure_correct) / sure if sure else math.nan),
        }


class Collector:
    """Accumulates one image at a time; `finish` turns the state into an Analysis."""

    def __init__(self, classes: ClassTable, gallery: int = GALLERY_SIZE):
        if gallery < 0:
            raise PixelsegError(f"gallery size must be >= 0, got {gallery}")
        self.classes = classes
        self.k = classes.num_classes
        self.cm = ConfusionMatrix(self.k, classes.ignore_index)
        self.gallery = gallery
        self.per_image: list[dict] = []
        # heaps of (key, index, item): _worst keeps the n lowest scores (key = -score), _best the n highest
        self._worst: list = []
        self._best: list = []
        self.calib = _Calibration()
        self.calib_before = _Calibration()
        self.mats: list[np.ndarray] = []
        self.t0 = time.perf_counter()

    def add(self, index: int, sample: Sample, pred: torch.Tensor, gt: torch.Tensor,
            confidence: torch.Tensor | None = None, raw_confidence: torch.Tensor | None = None) -> None:
        """pred, gt: HxW integer tensors at the mask's size; confidence: HxW max softmax probability;
        raw_confidence: the same before a stored temperature (given only when the run has one)."""
        self.cm.update(pred, gt)
        keep = gt != self.classes.ignore_index
        t, p = gt[keep].long(), pred[keep].long()
        one = torch.bincount(self.k * t + p, minlength=self.k * self.k).reshape(self.k, self.k).cpu().numpy()
        self.mats.append(one)
        miou, acc = mean_iou(one), pixel_accuracy(one)
        row = {"stem": sample.stem, "mIoU": None if math.isnan(miou) else round(miou, 6),
               "pixel_accuracy": None if math.isnan(acc) else round(acc, 6), "pixels": int(t.numel())}
        if confidence is not None:
            c = confidence[keep]
            self.calib.update(c, t == p)
            row["unsure"] = round(float((c < self.calib.threshold).float().mean()), 6) if c.numel() else None
        if raw_confidence is not None:
            self.calib_before.update(raw_confidence[keep], t == p)
        self.per_image.append(row)
        if math.isnan(miou) or self.gallery == 0:
            return                      # an all-ignore image says nothing about the model
        # ties broken by pixel accuracy, then by position (so the order is deterministic)
        score = (miou, acc)
        item = None

        def make() -> GalleryItem:
            return GalleryItem(index, sample, miou, acc,
                               pred.detach().cpu().numpy().astype(np.uint16 if self.k > 256 else np.uint8),
                               None if confidence is None else confidence.detach().cpu().numpy().astype(np.float16))
        for heap, key in ((self._worst, (-score[0], -score[1], -index)), (self._best, (score[0], score[1], -index))):
            if len(heap) < self.gallery:
                item = item or make()
                heapq.heappush(heap, (key, index, item))
            elif key > heap[0][0]:
                item = item or make()
                heapq.heapreplace(heap, (key, index, item))

    def finish(self, split: str, data_root, source, mask_color_channel: int | None = None,
               temperature: float = 1.0) -> Analysis:
        cands = {i: it for _, i, it in self._worst + self._best}
        # worst and best never share an image: with a small split each side gets half of it
        n = min(self.gallery, len(cands) // 2)
        worst = sorted(cands.values(), key=lambda g: (g.miou, g.pixel_accuracy, g.index))[:n]
        shown = {g.index for g in worst}
        best = [g for g in sorted(cands.values(), key=lambda g: (-g.miou, -g.pixel_accuracy, g.index))
                if g.index not in shown][:n]
        mats = np.stack(self.mats) if self.mats else None
        return Analysis(self.classes, split, str(data_root), str(source), self.cm.matrix, self.per_image,
                        worst, best, self.calib.to_dict(), time.perf_counter() - self.t0, mask_color_channel,
                        mats, self.calib_before.to_dict(), temperature)


def logits_to_prediction(logits: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """K x H x W logits -> (argmax label map, max softmax probability of logits / temperature), with one
    exp pass.

    max(softmax) = 1 / sum(exp(l - max l)); torch.max returns the first maximal index, as argmax
    does, so the label map is the one `evaluate` scores (a positive temperature does not move it).
    """
    top, pred = logits.max(0)
    conf = torch.exp((logits - top.unsqueeze(0)) / float(temperature)).sum(0).reciprocal_()
    return pred, conf


def analyze_run(run, data=None, split: str = "val", device: str = "auto", batch_size: int = 4,
                gallery: int = GALLERY_SIZE, num_workers: int = 0, labelled=None, progress=None) -> Analysis:
    """Run the best weights of `run` over a split of `data` (default: the data it was trained on), opened by
    measure.opener.open_split as evaluate opens it. `labelled`: that split already opened and checked by the
    caller (then `data` is not read again). `progress(done, total)` is called after every batch."""
    from pixelseg.measure.evaluation import eval_window, evaluate_split
    from pixelseg.measure.opener import open_split
    from pixelseg.run.folder import RunFolder, pick_device

    info = RunFolder(run).info()
    if labelled is None:
        labelled = open_split(run, data, split, verb="report")
    samples = labelled.samples
    dev = pick_device(device)
    model = info.load_model(dev)
    col = Collector(info.classes, gallery)

    t = info.temperature

    def collect(p) -> None:
        pred, conf = logits_to_prediction(p.logits[0], t)
        raw = None if t == 1.0 else logits_to_prediction(p.logits[0])[1]
        col.add(p.index, samples[p.index], pred, p.mask, conf, raw)

    evaluate_split(model, labelled.loader(batch_size, num_workers), dev, [collect],
                   progress=None if progress is None else (lambda done: progress(done, len(samples))),
                   window=eval_window(info.preprocessing))
    return col.finish(split, labelled.root, info.path, labelled.mask_color_channel, t)


def analyze_predictions(pred_dir, data, split: str = "val", gallery: int = GALLERY_SIZE, labelled=None) -> Analysis:
    """The same analysis for <stem>.png label maps written by any model (no calibration: no probabilities)."""
    from pixelseg.measure.evaluation import label_maps, prediction_folder
    from pixelseg.measure.opener import open_split

    pred_dir = prediction_folder(pred_dir)     # the cheaper mistake first, before the data is opened
    if labelled is None:
        labelled = open_split(None, data, split, verb="report")
    col = Collector(labelled.classes, gallery)
    for i, s, pred, gt in label_maps(pred_dir, labelled.index, labelled.samples, split):
        col.add(i, s, torch.from_numpy(pred), torch.from_numpy(gt))
    return col.finish(split, labelled.root, pred_dir, labelled.mask_color_channel)
