"""The measuring verbs over a run: evaluate, compare, tune-threshold and calibrate. Each opens its data through
measure.opener.open_split (one rule for which images and how they are decoded) and scores them through the one
evaluation pass (measure.evaluation.evaluate_split). pixelseg.api and the CLI are their faces."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from pixelseg.errors import PixelsegError
from pixelseg.measure.evaluation import (
    PixelSample,
    add_intervals,
    confusion_matrix,
    eval_window,
    evaluate_split,
    summarize_with_ci,
)
from pixelseg.measure.metrics import ConfusionMatrix, ThresholdSweep, summarize
from pixelseg.measure.opener import LabelledSplit, open_split


def run_confusion(run, labelled: LabelledSplit, device: str = "auto") -> ConfusionMatrix:
    """The confusion matrix of `run`'s best weights on `labelled`, one matrix per image kept (for intervals)."""
    from pixelseg.run.folder import RunFolder, pick_device

    folder = RunFolder(run)
    info = folder.info()
    if info.classes.names != labelled.classes.names:
        raise PixelsegError(f"{labelled.root}: classes {list(labelled.classes.names)} differ from the run's "
                            f"{list(info.classes.names)}; evaluate on data with the run's class table")
    dev = pick_device(device)
    scored = dataclasses.replace(labelled, info=info)     # preprocessed the way this run was trained
    return confusion_matrix(folder.load_model(dev), scored.loader(), labelled.classes.num_classes,
                            labelled.classes.ignore_index, dev, per_image=True, window=eval_window(info.preprocessing))


def evaluate_run(run, data=None, split: str = "val", device: str = "auto") -> dict:
    """Metrics of `run` on a split of `data` (default: its own data), with 95 % bootstrap intervals."""
    labelled = open_split(run, data, split, verb="evaluate")
    result = summarize_with_ci(run_confusion(run, labelled, device), labelled.classes.names)
    result.update(split=split, images=len(labelled.samples), source=str(run))
    return result


def evaluate_label_maps(pred_dir, data, split: str = "val") -> dict:
    """Metrics of <stem>.png label maps written by any model, against a labelled split of `data`."""
    from pixelseg.measure.evaluation import label_maps, prediction_folder

    pred_dir = prediction_folder(pred_dir)     # the cheaper mistake first, before the data is opened
    labelled = open_split(None, data, split, verb="evaluate")
    classes = labelled.classes
    cm = ConfusionMatrix(classes.num_classes, classes.ignore_index, per_image=True)
    for _, _, pred, gt in label_maps(pred_dir, labelled.index, labelled.samples, split):
        cm.update(pred, gt)
    result = summarize_with_ci(cm, classes.names)
    result.update(split=split, images=len(labelled.samples), source=str(pred_dir))
    return result


def compare(run_a, run_b, data=None, split: str = "val", device: str = "auto", n_boot: int = 1000,
            seed: int = 0) -> dict:
    """How sure is it that run A beats run B? Both are evaluated on the same images (a split of `data`, default
    the data both runs were trained on) and a paired bootstrap over those images (stats.paired_bootstrap)
    resamples their per-image confusion matrices together. Returns paired_bootstrap's dict with "per_class_iou"
    keyed by class name, plus "a"/"b" (each run's metrics with intervals), "data", "split" and "verdict"."""
    from pixelseg.measure.stats import paired_bootstrap
    from pixelseg.run.folder import RunFolder

    a_name, b_name = pair_names(run_a, run_b)
    if data is None:
        roots = {RunFolder(r).require_data_root() for r in (run_a, run_b)}
        if len(roots) > 1:
            shown = ", ".join(map(str, sorted(roots)))
            raise PixelsegError(f"{run_a} and {run_b} were trained on different data ({shown}); "
                                "pass --data ROOT to compare them on the same images")
        data = roots.pop()
    labelled = open_split(run_a, data, split, verb="compare")   # A's split decides the images; B is scored on them
    mats, runs = [], {}
    for key, run in (("a", run_a), ("b", run_b)):
        cm = run_confusion(run, labelled, device)
        mats.append(cm.per_image)
        runs[key] = add_intervals(summarize(cm.matrix, labelled.classes.names), cm.per_image)
        runs[key]["source"] = str(run)
    result = paired_bootstrap(mats[0], mats[1], n_boot=n_boot, seed=seed, a_name=a_name, b_name=b_name)
    result["per_class_iou"] = dict(zip(labelled.classes.names, result["per_class_iou"]))
    result.update(runs, names=[a_name, b_name], data=str(labelled.root), split=split)
    return result


def pair_names(run_a, run_b) -> tuple[str, str]:
    a, b = Path(run_a), Path(run_b)
    if a.name != b.name:
        return a.name, b.name
    if a.parent.name != b.parent.name:
        return f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"
    return f"{a.name} (A)", f"{b.name} (B)"


def tune_threshold(run, data=None, split: str = "val", device: str = "auto") -> dict:
    """For a run trained with binary_sigmoid: the foreground probability threshold that maximizes the mIoU on
    a labelled split of `data` (default: the run's training data; swept in steps of 0.01 in one pass), written
    into RUN/model.json (atomically) so that predict, evaluate, export and serve use it.
    Returns {"threshold", "mIoU", "threshold_before", "mIoU_before", "images", "data"}."""
    from pixelseg.run.folder import RunFolder, pick_device

    folder = RunFolder(run)
    info = folder.info()
    if info.sigmoid_threshold is None:
        raise PixelsegError(f"{run}: not a binary_sigmoid run (its model has one channel per class); there is no "
                            "threshold to tune")
    labelled = open_split(run, data, split, verb="tune the threshold")
    dev = pick_device(device)
    model = info.load_model(dev).model      # the one-channel network inside the 2-class view
    sweep = ThresholdSweep(labelled.classes.ignore_index)
    # no sliding window here: the sweep needs the one raw logit, which blended window probabilities are not
    evaluate_split(model, labelled.loader(), dev, [lambda p: sweep.update(p.logits, p.mask[None])])
    thresholds, miou = sweep.miou()
    before = float(miou[min(int(round(info.sigmoid_threshold * sweep.bins)), sweep.bins - 1)])
    best, best_miou = sweep.best()
    folder.write_info(dataclasses.replace(info, sigmoid_threshold=best))
    return {"threshold": best, "mIoU": best_miou, "threshold_before": info.sigmoid_threshold, "mIoU_before": before,
            "images": len(labelled.samples), "data": str(labelled.root)}


def calibrate(run, data=None, split: str = "val", device: str = "auto", max_pixels: int = 200_000,
              seed: int = 0) -> dict:
    """Fit the temperature T that makes the run's probabilities honest (softmax(logits / T), Guo et al. 2017)
    on a labelled split of `data` (default: the run's own data), and write it into RUN/model.json (atomically):
    predict's probabilities and --uncertainty, serve's confidence and the report's calibration use it after;
    label maps and metrics do not change. Fitted from the raw logits (whatever T was stored) on at most
    `max_pixels` labelled pixels spread evenly over the images. ECE (calibration.expected_calibration_error)
    is measured on those pixels. Returns {"temperature", "temperature_before", "ece_raw" (T = 1),
    "ece_before" (the stored T), "ece" (the new T), "pixels", "images", "data", "split"}."""
    import torch

    from pixelseg.measure.calibration import expected_calibration_error, fit_temperature
    from pixelseg.run.folder import RunFolder, pick_device

    folder = RunFolder(run)
    info = folder.info()
    labelled = open_split(run, data, split, verb="calibrate")
    ignore = labelled.classes.ignore_index
    dev = pick_device(device)
    sample = PixelSample(ignore, math.ceil(max_pixels / len(labelled.samples)), seed)
    evaluate_split(folder.load_model(dev), labelled.loader(), dev, [sample], window=eval_window(info.preprocessing))
    logits, labels = sample.arrays()
    t = fit_temperature(logits, labels, ignore, max_pixels=max_pixels, seed=seed)

    def ece(temp: float) -> float:
        return expected_calibration_error(torch.softmax(logits / temp, 0), labels, ignore_index=ignore)
    result = {"temperature": t, "temperature_before": info.temperature, "ece_raw": ece(1.0),
              "ece_before": ece(info.temperature), "ece": ece(t), "pixels": int(labels.numel()),
              "images": len(labelled.samples), "data": str(labelled.root), "split": split}
    folder.write_info(dataclasses.replace(info, temperature=t))
    return result
