"""The Python API: the same verbs as the CLI.

    run = pixelseg.train(data="data/", max_minutes=5)          # -> Path of the run folder
    predictor = pixelseg.load(run); label = predictor.predict("img.png")
    metrics = pixelseg.evaluate(run, data="data/")             # -> dict (see metrics.summarize)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pixelseg.config import Config, from_dict, load_config, option_keys
from pixelseg.errors import PixelsegError

# keyword (and CLI flag) -> config key, generated from the config fields
SHORT_KEYS = option_keys()


def make_config(config: str | Path | None = None, **kwargs) -> Config:
    overrides = {}
    for k, v in kwargs.items():
        if v is None:
            continue
        if k not in SHORT_KEYS:
            raise PixelsegError(f"unknown training option '{k}'; valid: {', '.join(sorted(SHORT_KEYS))}")
        overrides[SHORT_KEYS[k]] = v
    if config is not None:
        return load_config(config, overrides)
    return from_dict({}, overrides)


def train(data: str | Path | None = None, model: str | None = None, *, config: str | Path | None = None,
          resume: bool = False, quiet: bool = False, report: bool = False, **kwargs) -> Path:
    """Train and return the run folder. kwargs are the CLI's long options (epochs=, max_minutes=, lr=, ...).
    With report=True, RUN/report/report.html is written at the end (the CLI does this unless --no-report)."""
    from pixelseg.engine.trainer import train as _train

    if resume:
        out = kwargs.get("out")
        if out is None:
            raise PixelsegError("--resume needs the run folder: pass --out RUN")
        saved = Path(out) / "config.yaml"
        if not saved.is_file():
            raise PixelsegError(f"{saved}: not found; {out} is not a run that can be resumed")
        allowed = {"epochs", "max_minutes", "out", "device", "num_workers", "threads", "checkpoint_minutes"}
        extra = {k for k, v in kwargs.items() if v is not None} - allowed
        if extra or model or config:
            raise PixelsegError(f"--resume continues {out} with its saved config; only --epochs, --max-minutes, --device, "
                                f"--num-workers, --threads, --checkpoint-minutes may change (got {', '.join(sorted(extra | ({'model'} if model else set())))})")
        cfg = load_config(saved, {SHORT_KEYS[k]: v for k, v in kwargs.items() if v is not None})
        if data is not None:
            cfg = cfg.replace(**{"data.root": str(data)})
    else:
        cfg = make_config(config, data=str(data) if data is not None else None, model=model, **kwargs)
    run = _train(cfg, resume=resume, quiet=quiet)
    # under torchrun every rank returns here; one report, from rank 0, is enough
    if report and os.environ.get("RANK", "0") == "0":
        from pixelseg.report import build_report
        build_report(run)
    return run


def load(run: str | Path, device: str = "auto", **options):
    """A Predictor for a run folder (or an exported .onnx/.xml): .predict(image) -> HxW class indices at the
    image's size. options: backend=, precision=, threads=, tile=, overlap=, tta= (see inference.Predictor)."""
    from pixelseg.inference import Predictor
    return Predictor(run, device, **options)


def evaluate(run: str | Path | None = None, data: str | Path | None = None, split: str = "val",
             pred_dir: str | Path | None = None, device: str = "auto", batch_size: int = 4,
             report: bool | str | Path = False) -> dict:
    """Metrics of a run (or of label maps in pred_dir written by any model) on a split of `data`.
    With `report` (True, or the HTML path) the evaluation also writes its report, in the same pass:
    RUN/report/report.html for a run, PRED_DIR/report/report.html for label maps."""
    import torch
    from torch.utils.data import DataLoader

    from pixelseg.data.checks import require_clean
    from pixelseg.data.dataset import EvalDataset, eval_collate
    from pixelseg.data.formats import open_dataset
    from pixelseg.data.labels import load_mask
    from pixelseg.data.transforms import eval_transform
    from pixelseg.engine.trainer import evaluate as _evaluate
    from pixelseg.inference.predictor import pick_device
    from pixelseg.metrics import ConfusionMatrix, summarize
    from pixelseg.run import load_model, read_run

    if data is None:
        raise PixelsegError("evaluate needs the ground truth: pass --data ROOT")
    if (run is None) == (pred_dir is None):
        raise PixelsegError("evaluate takes either a RUN folder or --pred-dir PRED (label maps), not both or neither")
    index = open_dataset(data) if run is None else open_like_run(run, data)
    classes = index.classes
    samples = index.split(split)
    if not all(s.mask is not None for s in samples):
        raise PixelsegError(f"{index.root}: split '{split}' has no masks to evaluate against")
    require_clean(index, (split,))
    if report:
        # one pass gives the metrics and the report's extras (gallery, calibration): no second evaluation
        from pixelseg.report import analyze_predictions, analyze_run, build_report
        if pred_dir is not None:
            analysis = analyze_predictions(pred_dir, data, split, index=index)
        else:
            analysis = analyze_run(run, data, split, device, batch_size, index=index)
        result = analysis.summary
        result.update(split=split, images=len(samples), source=str(analysis.source))
        result["report"] = str(build_report(run, analysis=analysis, out=None if report is True else report))
        return result
    if pred_dir is not None:
        from pixelseg.viz import read_label_png
        pred_dir = Path(pred_dir)
        if not pred_dir.is_dir():
            raise PixelsegError(f"{pred_dir}: prediction folder not found; give the folder of <stem>.png label maps")
        cm = ConfusionMatrix(classes.num_classes, classes.ignore_index)
        for s in samples:
            p = pred_dir / f"{s.stem}.png"
            if not p.is_file():
                raise PixelsegError(f"{p}: no prediction for {s.image.name}; predict every image of split '{split}'")
            pred = read_label_png(p)
            gt = load_mask(s, index.mask_color_channel)
            if pred.shape != gt.shape:
                raise PixelsegError(f"{p}: prediction is {pred.shape[1]}x{pred.shape[0]}, ground truth {s.mask.name} is "
                                    f"{gt.shape[1]}x{gt.shape[0]}; predictions must be at the original size")
            if pred.max(initial=0) >= classes.num_classes:
                raise PixelsegError(f"{p}: holds class index {int(pred.max())} but {index.root} has {classes.num_classes} classes")
            cm.update(pred.astype(np.int64), gt.astype(np.int64))
        result = summarize(cm.matrix, classes.names)
        result.update(split=split, images=len(samples), source=str(pred_dir))
        return result
    info = read_run(run)
    if info.classes.names != classes.names:
        raise PixelsegError(f"{index.root}: classes {list(classes.names)} differ from the run's {list(info.classes.names)}; "
                            "evaluate on data with the run's class table")
    dev = pick_device(device)
    model = load_model(info, dev)
    pre = info.preprocessing
    ds = EvalDataset(samples, classes.num_classes, classes.ignore_index, pre.in_channels, pre.mean, pre.std,
                     eval_transform(pre.image_size), index.mask_color_channel)
    loader = DataLoader(ds, batch_size=1, collate_fn=eval_collate)
    with torch.inference_mode():
        cm = _evaluate(model, loader, classes.num_classes, classes.ignore_index, dev)
    result = summarize(cm.matrix, classes.names)
    result.update(split=split, images=len(samples), source=str(info.path))
    return result


def open_like_run(run: str | Path, data: str | Path):
    """`data` opened the way `run` read its training data: with the run's data.format and val_fraction
    (config.yaml) when `data` is that same folder, so that a held-out val split and a format option such as
    camvid11 (32 CamVid classes grouped into 11) carry over; a format variant carries over to any folder (a
    model of the 11 CamVid classes is evaluated on CamVid read as 11 classes). Other folders are detected."""
    from pixelseg.data.formats import VARIANTS, open_dataset
    from pixelseg.report.analysis import run_data_settings

    settings = run_data_settings(run)
    fmt, root = settings.get("format") or "auto", settings.get("root")
    same = bool(root) and Path(root).resolve() == Path(data).resolve()
    if same or fmt in VARIANTS:
        return open_dataset(data, fmt, float(settings.get("val_fraction", 0.1)) if same else 0.1)
    return open_dataset(data)


def tune_threshold(run: str | Path, data: str | Path | None = None, split: str = "val", device: str = "auto") -> dict:
    """For a run trained with binary_sigmoid: the foreground probability threshold that maximizes the mIoU on
    a labelled split of `data` (default: the run's training data; swept in steps of 0.01 in one pass), written
    into RUN/model.json (atomically) so that predict, evaluate, export and serve use it.
    Returns {"threshold", "mIoU", "threshold_before", "mIoU_before", "images", "data"}."""
    import dataclasses

    import torch
    from torch.utils.data import DataLoader

    from pixelseg.data.checks import require_clean
    from pixelseg.data.dataset import EvalDataset, eval_collate
    from pixelseg.data.transforms import eval_transform
    from pixelseg.inference.predictor import pick_device, resize_logits
    from pixelseg.metrics import ThresholdSweep
    from pixelseg.run import load_model, read_run, write_run_info

    info = read_run(run)
    if info.sigmoid_threshold is None:
        raise PixelsegError(f"{run}: not a binary_sigmoid run (its model has one channel per class); there is no "
                            "threshold to tune")
    if data is None:
        from pixelseg.report.analysis import run_data_settings
        data = run_data_settings(run).get("root")
        if not data or not Path(data).exists():
            raise PixelsegError(f"{run}: the dataset it was trained on ({data or 'not named in config.yaml'}) is not "
                                "there; pass --data ROOT")
    index = open_like_run(run, data)
    if index.classes.names != info.classes.names:
        raise PixelsegError(f"{index.root}: classes {list(index.classes.names)} differ from the run's "
                            f"{list(info.classes.names)}")
    samples = index.split(split)
    require_clean(index, (split,))
    dev = pick_device(device)
    model = load_model(info, dev).model      # the one-channel network inside the 2-class view
    pre, ign = info.preprocessing, index.classes.ignore_index
    ds = EvalDataset(samples, 2, ign, pre.in_channels, pre.mean, pre.std, eval_transform(pre.image_size),
                     index.mask_color_channel)
    sweep = ThresholdSweep(ign)
    with torch.inference_mode():
        for x, masks, _ in DataLoader(ds, batch_size=1, collate_fn=eval_collate):
            logits = model(x.to(dev)).float()
            sweep.update(resize_logits(logits, tuple(masks[0].shape)), masks[0][None].to(dev))
    thresholds, miou = sweep.miou()
    before = float(miou[min(int(round(info.sigmoid_threshold * sweep.bins)), sweep.bins - 1)])
    best, best_miou = sweep.best()
    write_run_info(dataclasses.replace(info, sigmoid_threshold=best))
    return {"threshold": best, "mIoU": best_miou, "threshold_before": info.sigmoid_threshold, "mIoU_before": before,
            "images": len(samples), "data": str(index.root)}
