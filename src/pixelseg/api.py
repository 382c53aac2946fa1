"""The Python API: the same verbs as the CLI.

    run = pixelseg.train(data="data/", max_minutes=5)          # -> Path of the run folder
    predictor = pixelseg.load(run); label = predictor.predict("img.png")
    results = pixelseg.predict(run, ["a.png", "b.png"])         # -> [Result] (pixelseg/inference/results.py)
    probs = predictor.probs(["img.png"])[0]                    # K x H x W, the run's temperature applied
    metrics = pixelseg.evaluate(run, data="data/")             # -> dict (metrics.summarize + 95% intervals)
    pixelseg.compare(run_a, run_b)                             # paired bootstrap: is A better than B?
    pixelseg.calibrate(run)                                    # temperature into model.json
    pixelseg.report(run); pixelseg.export(run, "onnx"); pixelseg.audit(run); pixelseg.suggest(run, "new/")

The measuring verbs (compare, calibrate, tune_threshold) live in measure/verbs.py and the package exposes
them as they are; this module holds the verbs that compose several layers, with the CLI's defaults.
"""
from __future__ import annotations

from pathlib import Path

from pixelseg.config import SHORT_KEYS, Config, check_options, make_config
from pixelseg.errors import PixelsegError

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
    from pixelseg.torchrun import world
    if world()[0] == 0:
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
    from pixelseg.measure import verbs

    if (run is None) == (pred_dir is None):
        raise PixelsegError("evaluate takes either a RUN folder or --pred-dir PRED (label maps), not both or neither")
    if run is None and data is None:
        raise PixelsegError("evaluate --pred-dir needs the ground truth: pass --data ROOT")
    if not report:
        return verbs.evaluate_run(run, data, split, device) if run is not None else \
            verbs.evaluate_label_maps(pred_dir, data, split)
    # one pass gives the metrics and the report's extras (gallery, calibration): no second evaluation
    from pixelseg.reports.analysis import analyze_predictions, analyze_run
    from pixelseg.reports.builder import build_report
    if pred_dir is not None:
        analysis = analyze_predictions(pred_dir, data, split)
    else:
        analysis = analyze_run(run, data, split, device, batch_size)
    result = analysis.summary
    result.update(split=split, images=len(analysis.per_image), source=str(analysis.source))
    result["report"] = str(build_report(run, analysis=analysis, out=None if report is True else report))
    return result


def report(run: str | Path, data: str | Path | None = None, split: str = "val", out: str | Path | None = None, *,
           device: str = "auto", batch_size: int = 4, gallery: int = 6) -> Path:
    """`pixelseg report`: the HTML report of a run (curves, per-class IoU with intervals, confusion, calibration,
    worst and best images) on a split of `data` (default: its own data). Returns the page's path
    (RUN/report/report.html unless `out`)."""
    from pixelseg.reports.builder import build_report
    return build_report(hub_source(run), data, split, out, device, batch_size, gallery)


def export(run: str | Path, format: str = "onnx", out: str | Path | None = None, *, int8: bool = False,
           calib: str | Path | None = None, calib_count: int = 300, calib_method: str = "minmax",
           min_agreement: float | None = None) -> dict:
    """`pixelseg export`: the run as a self-describing ONNX / OpenVINO / TorchScript file, written only after its
    parity check against PyTorch passes (deploy.export.export_run). Returns the export report as a dict: "path",
    "agreement", "max_abs_diff", and with int8 the val mIoU before and after ("miou")."""
    from pixelseg.deploy.export import export_run
    return export_run(hub_source(run), format, out, int8=int8, calib=calib, calib_count=calib_count,
                      calib_method=calib_method, min_agreement=min_agreement).to_dict()


def audit(run: str | Path, data: str | Path | None = None, split: str = "train", folds: int | None = None,
          out: str | Path | None = None, *, device: str = "auto", fold_minutes: float = 3.0, threshold: float = 0.7,
          seed: int = 0, gallery: int = 24, labelme: int | None = None) -> dict:
    """`pixelseg audit`: the masks of `split` ranked by how likely they are wrong (RUN/audit/audit.json and
    audit.html unless `out`); the train split is scored by out-of-fold models (`folds`, default 3), other splits
    by the run itself. Returns the JSON's content."""
    from pixelseg.quality.audit import AuditSettings, audit_run
    if not 0 < threshold < 1:
        raise PixelsegError(f"threshold {threshold}: a probability between 0 and 1 (e.g. 0.7)")
    return audit_run(hub_source(run), data, split, folds, out, device=device, fold_minutes=fold_minutes, seed=seed,
                     gallery=gallery, settings=AuditSettings(threshold=threshold), labelme=labelme)


def suggest(run: str | Path, unlabelled, n: int = 10, out: str | Path | None = None, *, seed: int = 0,
            kind: str = "entropy", device: str = "auto", gallery: int = 24, labelme: bool = False) -> dict:
    """`pixelseg suggest`: the `n` unlabelled images (a folder, a file, or a list of them) most worth labelling
    next, uncertain and unlike each other (RUN/suggest/ unless `out`). Returns the JSON's content."""
    from pixelseg.quality.suggest import suggest as rank
    return rank(hub_source(run), unlabelled, n, seed, out, kind=kind, device=device, gallery=gallery, labelme=labelme)


def bench(source, size: tuple[int, int] | None = None, batch: int = 1, backends: list[str] | None = None, *,
          threads: int = 2, iters: int = 20, int8: bool = False, calib: str | Path | None = None,
          encoder: str | None = None) -> dict:
    """`pixelseg bench`: latency p50/p95, throughput, peak memory and agreement per backend for a run folder (or a
    registered model name, random weights). Returns {"rows": [...], "setup": {...}}."""
    from pixelseg.inference.bench import bench as measure
    if isinstance(source, (str, Path)) and Path(source).exists():
        source = hub_source(source)
    return measure(source, size, batch, backends, threads, iters, int8=int8, calib=calib, encoder=encoder)
