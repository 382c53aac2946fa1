"""The whole flow on the built-in data in minutes: make the data, train, evaluate, predict with overlays.

    result = pixelseg.quickstart.quickstart("quickstart", max_minutes=10, say=print)
    result.metrics["mIoU"], result.report, result.predictions

Everything goes under one folder (data/, run/, predictions/); a second call reuses the data and replaces
its own previous run, never a folder it did not write."""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pixelseg.errors import PixelsegError

MINUTES = 10.0          # the README's promise: a trained, measured model in about this long on a laptop CPU
STEPS = 4


@dataclass(frozen=True)
class QuickstartResult:
    data: Path
    run: Path
    predictions: Path
    metrics: dict
    report: Path
    seconds: float


def quickstart(out: str | Path = "quickstart", max_minutes: float = MINUTES, *, say: Callable[[str], None] = print,
               n_train: int = 1000, n_val: int = 100, size: tuple[int, int] = (128, 128),
               n_predict: int = 16) -> QuickstartResult:
    """Run the flow under `out`; `say` gets one line per step ("[k/4] ...")."""
    from pixelseg.api import train
    from pixelseg.data.tools.synth import generate
    from pixelseg.inference.predictor import Predictor
    from pixelseg.run.folder import RunFolder

    if max_minutes <= 0:
        raise PixelsegError(f"--max-minutes {max_minutes}: give a positive training budget")
    t0 = time.time()
    out = Path(out)
    data, run, preds = out / "data", RunFolder(out / "run"), out / "predictions"
    if not (data / "classes.json").is_file():
        say(f"[1/{STEPS}] writing the built-in dataset to {data} ...")
        generate(data, n_train=n_train, n_val=n_val, size=size, seed=0, workers=2)
    else:
        say(f"[1/{STEPS}] using the built-in dataset already in {data}")
    if run.path.exists():
        if not run.is_run() and any(run.path.iterdir()):
            raise PixelsegError(f"{run.path}: exists and is not a quickstart run; choose another --out")
        shutil.rmtree(run.path)  # quickstart's own previous output
    say(f"[2/{STEPS}] training for {max_minutes:g} min (the defaults, chosen for this machine) ...")
    train(data, out=str(run.path), max_minutes=max_minutes, report=True)
    say(f"[3/{STEPS}] evaluating the best checkpoint on the validation split ...")
    metrics = run.metrics()
    if metrics is None:
        raise PixelsegError(f"{run.metrics_path}: training ended without metrics; see the messages above")
    say(f"[4/{STEPS}] predicting the validation images with overlays -> {preds}")
    val_images = sorted((data / "val" / "images").iterdir())[:n_predict]
    Predictor(run.path).predict_paths(val_images, preds, overlay=True)
    return QuickstartResult(data, run.path, preds, metrics, run.report_html, time.time() - t0)
