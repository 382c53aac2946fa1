"""The Python API: the same verbs as the CLI.

    run = pixelseg.train(data="data/", max_minutes=5)          # -> Path of the run folder
    predictor = pixelseg.load(run); label = predictor.predict("img.png")
    results = pixelseg.predict(run, ["a.png", "b.png"])         # -> [Result] (pixelseg/results.py)
    probs = predictor.predict_probs(["img.png"])[0]           # K x H x W, the run's temperature applied
    metrics = pixelseg.evaluate(run, data="data/")             # -> dict (metrics.summarize + 95% intervals)
    pixelseg.compare(run_a, run_b)                             # paired bootstrap: is A better than B?
    pixelseg.calibrate(run)                                    # temperature into model.json
"""
from __future__ import annotations

import os
from pathlib import Path

from pixelseg.config import Config, from_dict, load_config, option_keys
from pixelseg.errors import PixelsegError

# keyword (and CLI flag) -> config key, generated from the config fields
SHORT_KEYS = option_keys()


def check_options(kwargs: dict) -> None:
    """Every keyword a training option (the CLI's long options with _), with a did-you-mean for a typo."""
    import difflib
    for k in kwargs:
        if k not in SHORT_KEYS:
            close = difflib.get_close_matches(k, list(SHORT_KEYS), 1, 0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise PixelsegError(f"unknown training option '{k}'; {hint}valid: {', '.join(sorted(SHORT_KEYS))}")


def make_config(config: str | Path | None = None, **kwargs) -> Config:
    check_options(kwargs)
    overrides = {SHORT_KEYS[k]: v for k, v in kwargs.items() if v is not None}
    if config is not None:
        return load_config(config, overrides)
    return from_dict({}, overrides)


def train(data: str | Path | None = None, model: str | None = None, *, config: str | Path | None = None,
          resume: bool = False, quiet: bool = False, report: bool = False, on_step=None, **kwargs) -> Path:
    """Train and return the run folder. kwargs are the CLI's long options (epochs=, max_minutes=, lr=, ...).
    With report=True, RUN/report/report.html is written at the end (the CLI does this unless --no-report).
    `on_step(state)` is called after every training step (engine.state.State: step, epoch, offset, ...)."""
    from pixelseg.engine.trainer import train as _train

    if resume:
        cfg = _resume_config(data, model, config, kwargs)
    else:
        cfg = make_config(config, data=str(data) if data is not None else None, model=model, **kwargs)
    run = _train(cfg, resume=resume, quiet=quiet, on_step=on_step)
    # under torchrun every rank returns here; one report, from rank 0, is enough
    if os.environ.get("RANK", "0") == "0":
        if report:
            from pixelseg.reports.builder import build_report
            build_report(run)
        from pixelseg.engine.tracking import finish_run
        # after the report, so that the tracked run gets its images, and the run folder as an artifact
        finish_run(cfg.train.logger, run)
    return run


RESUME_OPTIONS = {"epochs", "max_minutes", "out", "device", "num_workers", "threads", "checkpoint_minutes"}


def _resume_config(data, model, config, kwargs: dict) -> Config:
    """The saved config of the run named by out=, with the few options a resume may change. Re-running the
    same command with --resume is what people do: options equal to the saved ones are accepted; one that
    differs is refused, naming the saved and the given value."""
    from pixelseg.run.folder import RunFolder

    out = kwargs.get("out")
    if out is None:
        raise PixelsegError("--resume needs the run folder: pass --out RUN")
    if config:
        raise PixelsegError(f"--resume continues {out} with its saved config ({out}/config.yaml); drop --config")
    check_options(kwargs)
    run = RunFolder(out)
    saved = run.config()

    def value(key: str):
        section, name = key.split(".")
        return getattr(getattr(saved, section), name)
    given = {SHORT_KEYS[k]: v for k, v in kwargs.items() if v is not None and k not in RESUME_OPTIONS}
    if model:
        given["model.name"] = model
    changed = [(key, value(key), v) for key, v in given.items() if not _same(value(key), v)]
    if changed:
        listed = "; ".join(f"{key.split('.')[-1].replace('_', '-')}: saved {old!r}, given {new!r}"
                           for key, old, new in changed)
        raise PixelsegError(f"--resume continues {out} with its saved config, and these differ ({listed}); only "
                            "--epochs, --max-minutes, --device, --num-workers, --threads, --checkpoint-minutes may "
                            "change: drop the others, or train a new run (a new --out, --init-from to start from it)")
    cfg = run.config({SHORT_KEYS[k]: v for k, v in kwargs.items() if v is not None and k in RESUME_OPTIONS})
    if data is not None:
        return cfg.replace(**{"data.root": str(data)})
    root = run.data_root()     # a run stored with a relative root (older versions) still finds its data
    return cfg.replace(**{"data.root": str(root)}) if root is not None else cfg


def _same(saved, given) -> bool:
    """A given option equals the saved one (lists and tuples alike, numbers by value; "auto" matches what the
    recipe chose for it when the run started)."""
    if isinstance(given, str) and given == "auto":
        return True
    if isinstance(saved, (list, tuple)) and isinstance(given, (list, tuple)):
        return len(saved) == len(given) and all(_same(a, b) for a, b in zip(saved, given))
    if isinstance(saved, (int, float)) and isinstance(given, (int, float)) and not isinstance(given, bool):
        return float(saved) == float(given)
    return saved == given


def load(run: str | Path, device: str = "auto", **options):
    """A Predictor for a run folder, an exported .onnx/.xml, or a run shared on the Hub ("hf://user/name[@rev]",
    or "user/name" when no such local folder exists; pulled into the Hub cache): .predict(image) -> HxW class
    indices at the image's size. options: backend=, precision=, threads=, tile=, overlap=, tta= (see
    inference.Predictor). backend defaults to "auto", as in `pixelseg predict` and `serve` (the fast path for the
    device); backend="torch" gives exactly what `evaluate` scores. Hub access follows huggingface_hub (HF_TOKEN,
    HF_ENDPOINT, HF_HUB_OFFLINE)."""
    from pixelseg.inference.predictor import Predictor
    options.setdefault("backend", "auto")
    return Predictor(hub_source(run), device, **options)


def predict(model, source, *, batch_size: int = 4, device: str = "auto", **options) -> list:
    """One pixelseg.inference.results.Result per image: .labels, .probs, .overlay(), .save(dir), .plot(), .to_json(),
    and a picture in Jupyter. `model`: what load takes (a run folder, an export, "hf://user/name"), or a
    Predictor from load (device and options then go unused). `source`: an image path, a folder, a list of paths,
    or HxWxC / CxHxW uint8 arrays (a list, or an NxHxWxC batch)."""
    from pixelseg.inference.predictor import Predictor
    from pixelseg.inference.results import predict as _predict
    predictor = model if isinstance(model, Predictor) else load(model, device, **options)
    return _predict(predictor, source, batch_size)


def hub_source(run):
    """`run` as a local path: a Hub reference is pulled (hub.resolve_source), anything else passes through."""
    from pixelseg import hub
    return hub.resolve_source(run)


def evaluate(run: str | Path | None = None, data: str | Path | None = None, split: str = "val",
             pred_dir: str | Path | None = None, device: str = "auto", batch_size: int = 4,
             report: bool | str | Path = False) -> dict:
    """Metrics of a run (or of label maps in pred_dir written by any model) on a split of `data`.
    With `report` (True, or the HTML path) the evaluation also writes its report, in the same pass:
    RUN/report/report.html for a run, PRED_DIR/report/report.html for label maps.
    The result carries 95% bootstrap intervals over images (evaluation.add_intervals): "mIoU_ci",
    "pixel_accuracy_ci", per class "iou_ci", and "ci" saying how they were made."""
    from pixelseg.data.tools.checks import require_clean
    from pixelseg.data.formats import open_dataset
    from pixelseg.measure.evaluation import summarize_with_ci
    from pixelseg.measure.metrics import ConfusionMatrix
    from pixelseg.run.folder import RunFolder

    if (run is None) == (pred_dir is None):
        raise PixelsegError("evaluate takes either a RUN folder or --pred-dir PRED (label maps), not both or neither")
    if data is None:
        if run is None:
            raise PixelsegError("evaluate --pred-dir needs the ground truth: pass --data ROOT")
        data = RunFolder(run).require_data_root()     # the run's own data, as report and tune-threshold do
    index = open_dataset(data) if run is None else open_like_run(run, data)
    classes = index.classes
    samples = index.split(split)
    if not all(s.mask is not None for s in samples):
        raise PixelsegError(f"{index.root}: split '{split}' has no masks to evaluate against")
    require_clean(index, (split,))
    if report:
        # one pass gives the metrics and the report's extras (gallery, calibration): no second evaluation
        from pixelseg.reports.analysis import analyze_predictions, analyze_run
        from pixelseg.reports.builder import build_report
        if pred_dir is not None:
            analysis = analyze_predictions(pred_dir, data, split, index=index)
        else:
            analysis = analyze_run(run, data, split, device, batch_size, index=index)
        result = analysis.summary
        result.update(split=split, images=len(samples), source=str(analysis.source))
        result["report"] = str(build_report(run, analysis=analysis, out=None if report is True else report))
        return result
    if pred_dir is not None:
        from pixelseg.measure.evaluation import label_maps
        cm = ConfusionMatrix(classes.num_classes, classes.ignore_index, per_image=True)
        for _, _, pred, gt in label_maps(pred_dir, index, samples, split):
            cm.update(pred, gt)
        source = pred_dir
    else:
        cm, source = _run_confusion(run, index, samples, device), run
    result = summarize_with_ci(cm, classes.names)
    result.update(split=split, images=len(samples), source=str(source))
    return result


def compare(run_a: str | Path, run_b: str | Path, data: str | Path | None = None, split: str = "val",
            device: str = "auto", n_boot: int = 1000, seed: int = 0) -> dict:
    """How sure is it that run A beats run B? Both are evaluated on the same images (a split of `data`, default
    the data both runs were trained on) and a paired bootstrap over those images (stats.paired_bootstrap)
    resamples their per-image confusion matrices together. Returns paired_bootstrap's dict with "per_class_iou"
    keyed by class name, plus "a"/"b" (each run's metrics with intervals), "data", "split" and "verdict"."""
    from pixelseg.data.tools.checks import require_clean
    from pixelseg.measure.evaluation import add_intervals
    from pixelseg.measure.metrics import summarize
    from pixelseg.run.folder import RunFolder
    from pixelseg.measure.stats import paired_bootstrap

    a_name, b_name = _pair_names(run_a, run_b)
    if data is None:
        roots = {RunFolder(r).require_data_root() for r in (run_a, run_b)}
        if len(roots) > 1:
            shown = ", ".join(map(str, sorted(roots)))
            raise PixelsegError(f"{run_a} and {run_b} were trained on different data ({shown}); "
                                "pass --data ROOT to compare them on the same images")
        data = roots.pop()
    index = open_like_run(run_a, data)         # A's split decides the images; B is scored on the very same ones
    samples = index.split(split)
    if not samples or not all(s.mask is not None for s in samples):
        raise PixelsegError(f"{index.root}: split '{split}' has no masks to compare on; give a labelled split")
    require_clean(index, (split,))
    mats, runs = [], {}
    for key, run in (("a", run_a), ("b", run_b)):
        cm = _run_confusion(run, index, samples, device)
        mats.append(cm.per_image)
        runs[key] = add_intervals(summarize(cm.matrix, index.classes.names), cm.per_image)
        runs[key]["source"] = str(run)
    result = paired_bootstrap(mats[0], mats[1], n_boot=n_boot, seed=seed, a_name=a_name, b_name=b_name)
    result["per_class_iou"] = dict(zip(index.classes.names, result["per_class_iou"]))
    result.update(runs, names=[a_name, b_name], data=str(index.root), split=split)
    return result


def _pair_names(run_a, run_b) -> tuple[str, str]:
    a, b = Path(run_a), Path(run_b)
    if a.name != b.name:
        return a.name, b.name
    if a.parent.name != b.parent.name:
        return f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"
    return f"{a.name} (A)", f"{b.name} (B)"


def _run_confusion(run, index, samples, device: str):
    from pixelseg.measure.evaluation import confusion_matrix, eval_window, split_loader
    from pixelseg.run.folder import pick_device
    from pixelseg.run.folder import RunFolder

    info = RunFolder(run).info()
    classes = index.classes
    if info.classes.names != classes.names:
        raise PixelsegError(f"{index.root}: classes {list(classes.names)} differ from the run's {list(info.classes.names)}; "
                            "evaluate on data with the run's class table")
    dev = pick_device(device)
    loader = split_loader(samples, classes, info.preprocessing, index.mask_color_channel, batch_size=1)
    return confusion_matrix(RunFolder(run).load_model(dev), loader, classes.num_classes, classes.ignore_index, dev,
                            per_image=True, window=eval_window(info.preprocessing))


def open_like_run(run: str | Path, data: str | Path):
    """`data` opened the way `run` read its training data: with the run's data.format and val_fraction
    (config.yaml) when `data` is that same folder, so that a held-out val split and a format option such as
    camvid11 (32 CamVid classes grouped into 11) carry over; a format variant carries over to any folder (a
    model of the 11 CamVid classes is evaluated on CamVid read as 11 classes). Other folders are detected."""
    from pixelseg.data.formats import VARIANTS, open_dataset
    from pixelseg.run.folder import RunFolder

    folder = RunFolder(run)
    settings = folder.data_settings()
    fmt, root = settings.get("format") or "auto", folder.data_root()
    same = root is not None and root == Path(data).resolve()
    if same or fmt in VARIANTS:
        return open_dataset(data, fmt, float(settings.get("val_fraction", 0.1)) if same else 0.1)
    return open_dataset(data)


def tune_threshold(run: str | Path, data: str | Path | None = None, split: str = "val", device: str = "auto") -> dict:
    """For a run trained with binary_sigmoid: the foreground probability threshold that maximizes the mIoU on
    a labelled split of `data` (default: the run's training data; swept in steps of 0.01 in one pass), written
    into RUN/model.json (atomically) so that predict, evaluate, export and serve use it.
    Returns {"threshold", "mIoU", "threshold_before", "mIoU_before", "images", "data"}."""
    import dataclasses

    from pixelseg.data.tools.checks import require_clean
    from pixelseg.measure.evaluation import evaluate_split, split_loader
    from pixelseg.run.folder import pick_device
    from pixelseg.measure.metrics import ThresholdSweep
    from pixelseg.run.folder import RunFolder, load_model

    folder = RunFolder(run)
    info = folder.info()
    if info.sigmoid_threshold is None:
        raise PixelsegError(f"{run}: not a binary_sigmoid run (its model has one channel per class); there is no "
                            "threshold to tune")
    if data is None:
        data = folder.require_data_root()
    index = open_like_run(run, data)
    if index.classes.names != info.classes.names:
        raise PixelsegError(f"{index.root}: classes {list(index.classes.names)} differ from the run's "
                            f"{list(info.classes.names)}")
    samples = index.split(split)
    require_clean(index, (split,))
    dev = pick_device(device)
    model = load_model(info, dev).model      # the one-channel network inside the 2-class view
    sweep = ThresholdSweep(index.classes.ignore_index)
    loader = split_loader(samples, index.classes, info.preprocessing, index.mask_color_channel, batch_size=1)
    # no sliding window here: the sweep needs the one raw logit, which blended window probabilities are not
    evaluate_split(model, loader, dev, [lambda p: sweep.update(p.logits, p.mask[None])])
    thresholds, miou = sweep.miou()
    before = float(miou[min(int(round(info.sigmoid_threshold * sweep.bins)), sweep.bins - 1)])
    best, best_miou = sweep.best()
    folder.write_info(dataclasses.replace(info, sigmoid_threshold=best))
    return {"threshold": best, "mIoU": best_miou, "threshold_before": info.sigmoid_threshold, "mIoU_before": before,
            "images": len(samples), "data": str(index.root)}


def calibrate(run: str | Path, data: str | Path | None = None, split: str = "val", device: str = "auto",
              max_pixels: int = 200_000, seed: int = 0) -> dict:
    """Fit the temperature T that makes the run's probabilities honest (softmax(logits / T), Guo et al. 2017)
    on a labelled split of `data` (default: the run's own data), and write it into RUN/model.json (atomically):
    predict's probabilities and --uncertainty, serve's confidence and the report's calibration use it after;
    label maps and metrics do not change. Fitted from the raw logits (whatever T was stored) on at most
    `max_pixels` labelled pixels spread evenly over the images. ECE (uncertainty.expected_calibration_error)
    is measured on those pixels. Returns {"temperature", "temperature_before", "ece_raw" (T = 1),
    "ece_before" (the stored T), "ece" (the new T), "pixels", "images", "data", "split"}."""
    import dataclasses
    import math

    import torch

    from pixelseg.data.tools.checks import require_clean
    from pixelseg.measure.evaluation import PixelSample, eval_window, evaluate_split, split_loader
    from pixelseg.run.folder import pick_device
    from pixelseg.run.folder import RunFolder
    from pixelseg.inference.uncertainty import expected_calibration_error, fit_temperature

    folder = RunFolder(run)
    info = folder.info()
    index = open_like_run(run, data if data is not None else folder.require_data_root())
    if index.classes.names != info.classes.names:
        raise PixelsegError(f"{index.root}: classes {list(index.classes.names)} differ from the run's "
                            f"{list(info.classes.names)}; calibrate on data with the run's class table")
    samples = index.split(split)
    if not samples or not all(s.mask is not None for s in samples):
        raise PixelsegError(f"{index.root}: split '{split}' has no masks to calibrate on; give a labelled split")
    require_clean(index, (split,))
    dev = pick_device(device)
    sample = PixelSample(index.classes.ignore_index, math.ceil(max_pixels / len(samples)), seed)
    loader = split_loader(samples, index.classes, info.preprocessing, index.mask_color_channel, batch_size=1)
    evaluate_split(folder.load_model(dev), loader, dev, [sample], window=eval_window(info.preprocessing))
    logits, labels = sample.arrays()
    t = fit_temperature(logits, labels, index.classes.ignore_index, max_pixels=max_pixels, seed=seed)

    def ece(temp: float) -> float:
        probs = torch.softmax(logits / temp, 0)
        return expected_calibration_error(probs, labels, ignore_index=index.classes.ignore_index)
    result = {"temperature": t, "temperature_before": info.temperature, "ece_raw": ece(1.0),
              "ece_before": ece(info.temperature), "ece": ece(t), "pixels": int(labels.numel()),
              "images": len(samples), "data": str(index.root), "split": split}
    folder.write_info(dataclasses.replace(info, temperature=t))
    return result
