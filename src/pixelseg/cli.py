"""The command line: parses arguments, calls the library, prints. A user's mistake ends in one line on
stderr and a non-zero exit (2), never a traceback."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from pixelseg.errors import PixelsegError

QUICKSTART_MINUTES = 8.0


def _console():
    from rich.console import Console
    return Console()


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset root (folder or keras_segmentation layout)")
    p.add_argument("--config", help="YAML config; flags given here override it")
    p.add_argument("--model", help="model name (see `pixelseg models`); default: chosen for the hardware")
    p.add_argument("--encoder", help="encoder for encoder-decoder models, e.g. resnet34, mobilenet_v2, tu-<timm name>")
    p.add_argument("--encoder-weights", help="'imagenet' (needs network) or a local .safetensors/.pth file")
    p.add_argument("--image-size", type=int, nargs="+", metavar=("H", "W"), help="network input size (one value = square)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float, help="wall-clock budget; training stops cleanly when it runs out")
    p.add_argument("--lr", type=float)
    p.add_argument("--schedule", choices=["poly", "cosine"])
    p.add_argument("--loss", help="ce | dice | focal | lovasz, or sums like ce+dice, 0.5*focal+dice")
    p.add_argument("--class-weights", type=float, nargs="+")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment", choices=["none", "light", "default", "strong"])
    p.add_argument("--in-channels", type=int)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--amp", choices=["auto", "off", "fp16", "bf16"])
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (default runs/<model>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved state")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pixelseg", description="Semantic segmentation: data -> model -> metrics -> predictions.")
    ap.add_argument("--version", action="version", version=_version())
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    q = sub.add_parser("quickstart", help="make the built-in data, train, evaluate, predict: the whole flow in minutes")
    q.add_argument("--out", default="quickstart", help="folder for the data, the run and the predictions")
    q.add_argument("--max-minutes", type=float, default=QUICKSTART_MINUTES, help="training budget (default %(default)s)")

    t = sub.add_parser("train", help="train a model on a dataset")
    _add_train_args(t)

    e = sub.add_parser("evaluate", help="metrics of a run (or of label maps from any model) on a split")
    e.add_argument("run", nargs="?", help="run folder")
    e.add_argument("--pred-dir", help="folder of <stem>.png label maps to score instead of a run")
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="val")
    e.add_argument("--json", help="also write the metrics to this JSON file")
    e.add_argument("--device", default="auto")

    p = sub.add_parser("predict", help="label maps (and overlays) for images or folders")
    p.add_argument("run")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True)
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png with a legend")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")

    v = sub.add_parser("verify-dataset", help="check pairing, decoding, sizes and mask values; exit 1 on problems")
    v.add_argument("root")
    v.add_argument("--format", default="auto", choices=["auto", "folder", "keras"])

    sub.add_parser("models", help="the registered models with parameter counts")

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    s = dsub.add_parser("synth", help="write the built-in synthetic dataset in the folder format")
    s.add_argument("--out", required=True)
    s.add_argument("--train", type=int, default=400, help="training images (default %(default)s)")
    s.add_argument("--val", type=int, default=100, help="validation images (default %(default)s)")
    s.add_argument("--size", type=int, nargs="+", default=[128], metavar=("H", "W"), help="image size (default 128)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=2)
    return ap


def _version() -> str:
    from pixelseg import __version__
    return f"pixelseg {__version__}"


def _size(values):
    if values is None:
        return None
    if len(values) not in (1, 2):
        raise PixelsegError("--image-size takes H W (or one value for a square)")
    return tuple(values) if len(values) == 2 else (values[0], values[0])


def cmd_train(a) -> int:
    from pixelseg.api import train
    opts = {k: getattr(a, k) for k in ("encoder", "encoder_weights", "batch_size", "epochs", "max_minutes", "lr",
                                       "schedule", "loss", "class_weights", "label_smoothing", "augment", "in_channels",
                                       "num_workers", "threads", "amp", "device", "seed", "out")}
    opts["image_size"] = _size(a.image_size)
    run = train(a.data, a.model, config=a.config, resume=a.resume, **opts)
    _print_metrics(Path(run) / "metrics.json", f"validation of the best checkpoint ({run}/model.safetensors)")
    print(f"run folder: {run}")
    return 0


def _print_metrics(path_or_dict, title: str) -> dict:
    from pixelseg.metrics import format_table
    m = json.loads(Path(path_or_dict).read_text()) if not isinstance(path_or_dict, dict) else path_or_dict
    table = format_table(m)
    table.title = title
    _console().print(table)
    return m


def cmd_evaluate(a) -> int:
    from pixelseg.api import evaluate
    from pixelseg.fileio import write_json
    m = evaluate(a.run, a.data, a.split, a.pred_dir, a.device)
    _print_metrics(m, f"{a.split} split of {a.data}: {m['images']} images, {m['source']}")
    if a.json:
        write_json(a.json, m)
        print(f"metrics written to {a.json}")
    return 0


def cmd_predict(a) -> int:
    from pixelseg.inference import Predictor
    from pixelseg.inference.predictor import list_inputs
    if not 0 <= a.alpha <= 1:
        raise PixelsegError(f"--alpha {a.alpha} is outside 0..1")
    pred = Predictor(a.run, a.device)
    n = len(list_inputs(a.inputs))
    t0 = time.time()
    written = pred.predict_paths(a.inputs, a.out, overlay=a.overlay, alpha=a.alpha, batch_size=a.batch_size)
    dt = time.time() - t0
    print(f"{n} image(s) -> {a.out} ({len(written)} files, {dt:.1f}s, {n / max(dt, 1e-9):.1f} img/s)")
    return 0


def cmd_verify(a) -> int:
    from rich.table import Table

    from pixelseg.data.checks import scan_split
    from pixelseg.data.formats import open_dataset
    con = _console()
    index = open_dataset(a.root, a.format)
    for note in index.notes:
        con.print(f"note: {note}")
    problems = []
    t = Table(title=f"{index.root} ({index.format} format, {index.classes.num_classes} classes)")
    t.add_column("class")
    reports = [scan_split(index, s, decode_images=True) for s in index.splits if any(x.mask for x in index.splits[s])]
    for r in reports:
        t.add_column(f"{r.name} ({r.images} img)", justify="right")
        problems += r.problems
    names = list(index.classes.names) + [f"ignore ({index.classes.ignore_index})"]
    for i, n in enumerate(names):
        cells = []
        for r in reports:
            tot = max(1, int(r.counts.sum()))
            cells.append(f"{int(r.counts[i]):,} ({r.counts[i] / tot:.1%})")
        t.add_row(n, *cells)
    con.print(t)
    for r in reports:
        absent = [index.classes.names[i] for i in range(index.classes.num_classes) if r.counts[i] == 0]
        if absent and r.name == "train":
            con.print(f"[yellow]warning:[/] classes never seen in train: {', '.join(absent)}")
    if problems:
        for p in problems:
            print(f"problem: {p}", file=sys.stderr)
        print(f"verdict: {len(problems)} problem(s) in {index.root}; fix the files listed above", file=sys.stderr)
        return 1
    con.print(f"verdict: OK — {sum(r.images for r in reports)} image/mask pairs decode, sizes match, values are valid")
    return 0


def cmd_models(a) -> int:
    from rich.table import Table

    from pixelseg.models import MODELS, build_model, count_parameters
    t = Table(title="registered models (parameters for 21 classes, RGB)")
    for c in ("name", "family", "default encoder", "params", "typical use"):
        t.add_column(c)
    for e in MODELS:
        n = count_parameters(build_model(e.name, 21, 3))
        t.add_row(e.name, e.info.get("family", ""), e.info.get("default_encoder", ""), f"{n / 1e6:.1f}M", e.info.get("use", ""))
    _console().print(t)
    return 0


def cmd_data(a) -> int:
    from pixelseg.data.synth import generate
    size = _size(a.size)
    summary = generate(a.out, n_train=a.train, n_val=a.val, size=size, seed=a.seed, workers=a.workers)
    print(f"wrote {a.train} train + {a.val} val images ({size[0]}x{size[1]}) to {a.out} "
          f"in {summary.get('seconds', 0):.1f}s")
    return 0


def cmd_quickstart(a) -> int:
    from pixelseg.api import train
    from pixelseg.data.synth import generate
    from pixelseg.inference import Predictor
    from pixelseg.run import is_run

    t0 = time.time()
    out = Path(a.out)
    data, run, preds = out / "data", out / "run", out / "predictions"
    if not (data / "classes.json").is_file():
        print(f"[1/4] writing the built-in dataset to {data} ...")
        generate(data, n_train=1000, n_val=100, size=(128, 128), seed=0, workers=2)
    else:
        print(f"[1/4] using the built-in dataset already in {data}")
    if run.exists():
        if not is_run(run) and any(run.iterdir()):
            raise PixelsegError(f"{run}: exists and is not a quickstart run; choose another --out")
        shutil.rmtree(run)  # quickstart's own previous output
    print(f"[2/4] training for {a.max_minutes:g} min (the defaults, chosen for this machine) ...")
    train(data, out=str(run), max_minutes=a.max_minutes)
    print("[3/4] evaluating the best checkpoint on the validation split ...")
    m = _print_metrics(run / "metrics.json", f"validation: {data}/val at original resolution")
    print(f"[4/4] predicting the validation images with overlays -> {preds}")
    pred = Predictor(run)
    val_images = sorted((data / "val" / "images").iterdir())[:16]
    pred.predict_paths(val_images, preds, overlay=True)
    print(f"\ndone in {(time.time() - t0) / 60:.1f} min. mIoU {m['mIoU']:.4f} on {m['images']} val images "
          f"({m.get('hardware')}, {m['train_seconds'] / 60:.1f} min of training)")
    print(f"  data:        {data}")
    print(f"  run folder:  {run}  (model.safetensors, model.json, config.yaml, metrics.csv, metrics.json)")
    print(f"  predictions: {preds}  (<stem>.png label maps, <stem>_overlay.png with legends)")
    return 0


COMMANDS = {"quickstart": cmd_quickstart, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "verify-dataset": cmd_verify, "models": cmd_models, "data": cmd_data}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PixelsegError as e:
        print(f"pixelseg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixelseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
