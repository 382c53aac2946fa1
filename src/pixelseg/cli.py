"""The command line: parses arguments, calls the library, prints. A user's mistake ends in one line on
stderr and a non-zero exit (2), never a traceback."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from pixelseg.errors import PixelsegError

QUICKSTART_MINUTES = 10.0


def _console():
    from rich.console import Console
    return Console()


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset root: folder, keras, VOC, Cityscapes, ADE20K, CamVid, color masks, COCO, LabelMe")
    p.add_argument("--format", help="force the dataset layout instead of detecting it (see `pixelseg verify-dataset -h`)")
    p.add_argument("--config", help="YAML config; flags given here override it")
    p.add_argument("--model", help="model name (see `pixelseg models`); default: chosen for the hardware")
    p.add_argument("--encoder", help="encoder for encoder-decoder models, e.g. resnet34, mobilenet_v2, tu-<timm name>")
    p.add_argument("--encoder-weights", help="'imagenet' (needs network) or a local .safetensors/.pth file")
    p.add_argument("--image-size", type=int, nargs="+", metavar=("H", "W"), help="network input size (one value = square)")
    p.add_argument("--batch-size", type=int, help="images per step, GLOBAL: under torchrun split evenly over the processes")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float, help="wall-clock budget; training stops cleanly when it runs out")
    p.add_argument("--lr", type=float)
    p.add_argument("--schedule", choices=["poly", "cosine"])
    p.add_argument("--loss", help="ce | ohem | dice | focal | jaccard | lovasz, or sums like ce+dice, 0.5*focal+dice")
    p.add_argument("--class-weights", nargs="+", metavar="W",
                   help="one weight per class, or 'auto' (median frequency balancing over the train masks)")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment", help="none | light | default | strong | aerial | medical, or an albumentations "
                   "pipeline file (.yaml/.json)")
    p.add_argument("--in-channels", type=int)
    p.add_argument("--binary-sigmoid", action="store_true", default=None,
                   help="2-class data trained as one sigmoid channel (default: 2 softmax channels)")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--amp", choices=["auto", "off", "fp16", "bf16"])
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (default runs/<model>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved state")
    _add_scale_args(p)


def _add_scale_args(p: argparse.ArgumentParser) -> None:
    """Scale, faults, speed, imbalance (engine/trainer.py). Under torchrun --batch-size is the GLOBAL batch."""
    g = p.add_argument_group("scale and speed")
    g.add_argument("--accumulate", type=int, help="batches per optimizer step (gradient accumulation)")
    g.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the global gradient norm to NORM")
    g.add_argument("--ema", type=float, metavar="DECAY", help="keep an EMA of the weights (e.g. 0.999); it is evaluated and saved")
    g.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory format")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (opt-in)")
    g.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm across torchrun ranks")
    g.add_argument("--sampling", choices=["uniform", "repeat"], help="repeat: repeat-factor sampling of images with rare classes")
    g.add_argument("--repeat-threshold", type=float, help="repeat sampling: rare = in fewer than this share of images (default 0.1)")
    g.add_argument("--checkpoint-minutes", type=float, help="save the resumable state this often mid-epoch (default 10; 0 = every step)")
    g.add_argument("--logger", choices=["csv", "tensorboard"], help="CSV is always written; tensorboard adds RUN/tensorboard")
    _add_transfer_args(p)


def _add_transfer_args(p: argparse.ArgumentParser) -> None:
    """Fine-tuning, deep supervision, distillation (engine/finetune.py, engine/objective.py)."""
    g = p.add_argument_group("fine-tuning and distillation")
    g.add_argument("--init-from", metavar="RUN|FILE", help="start from a run folder or weights file; the head is "
                   "re-initialised when the class count differs, and what was loaded is printed")
    g.add_argument("--aux-weight", type=float, metavar="W", help="loss weight of the auxiliary heads (pspnet, bisenetv2); "
                   "default: the paper's; 0 = off")
    g.add_argument("--teacher", metavar="RUN", help="distill from this trained run (pixel-wise KL on softened outputs)")
    g.add_argument("--distill-temperature", type=float, metavar="T", help="softmax temperature of the KL term (default 1)")
    g.add_argument("--distill-weight", type=float, metavar="W", help="weight of the KL term next to the task loss (default 1)")


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
    e.add_argument("--no-report", action="store_true",
                   help="skip the HTML report (RUN/report/report.html, or PRED_DIR/report/ with --pred-dir)")
    _add_tune_threshold_command(sub)
    _add_report_commands(sub, t)
    _add_serve_command(sub)

    p = sub.add_parser("predict", help="label maps (and overlays) for images, folders, videos or a camera")
    p.add_argument("run", help="run folder, or a model file `pixelseg export` wrote (.onnx, .xml)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images, folders, one video file, or camera:N")
    p.add_argument("--out", required=True, help="folder for label maps; for a video or camera an output video (.mp4, .avi)")
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png with a legend")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    _add_inference_args(p)
    p.add_argument("--max-frames", type=int, help="video/camera: stop after this many frames")
    _add_export_commands(sub)

    v = sub.add_parser("verify-dataset", help="dataset doctor: pairing, decoding, sizes, values, duplicates across "
                       "splits, class frequencies and weights, suggested --image-size; exit 1 on problems")
    v.add_argument("root")
    from pixelseg.data.commands import add_data_commands, add_verify_args
    add_verify_args(v)

    m = sub.add_parser("models", help="the model zoo: family, parameters, GFLOPs at 512x512, ONNX export, typical use")
    m.add_argument("filter", nargs="*", help="keep models whose name, family or use contains every word (e.g. real-time, fcn)")
    m.add_argument("--family", help="only this family (FCN, SegNet, U-Net, PSPNet, DeepLab, FPN, UPerNet, SegFormer, real-time)")
    m.add_argument("--size", type=int, nargs="+", default=[512], metavar=("H", "W"), help="input size for GFLOPs (default 512)")
    m.add_argument("--classes", type=int, default=21, help="classes for the head (default %(default)s, as in VOC)")
    m.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    s = dsub.add_parser("synth", help="write the built-in synthetic dataset in the folder format")
    s.add_argument("--out", required=True)
    s.add_argument("--train", type=int, default=400, help="training images (default %(default)s)")
    s.add_argument("--val", type=int, default=100, help="validation images (default %(default)s)")
    s.add_argument("--size", type=int, nargs="+", default=[128], metavar=("H", "W"), help="image size (default 128)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=2)
    add_data_commands(dsub)
    return ap


def _add_report_commands(sub, train_parser: argparse.ArgumentParser) -> None:
    train_parser.add_argument("--no-report", action="store_true",
                              help="skip the HTML report written at the end (RUN/report/report.html)")
    r = sub.add_parser("report", help="HTML report of a run: curves, per-class IoU, confusion, calibration, "
                                      "worst/best images")
    r.add_argument("run", help="run folder")
    r.add_argument("--data", help="dataset root (default: the one the run was trained on)")
    r.add_argument("--split", default="val")
    r.add_argument("--out", help="HTML file (default RUN/report/report.html; the PNGs always go to RUN/report/)")
    r.add_argument("--gallery", type=int, default=6, help="worst and best images shown (default %(default)s each)")
    r.add_argument("--batch-size", type=int, default=4)
    r.add_argument("--device", default="auto")
    c = sub.add_parser("compare", help="per-class IoU of runs side by side: a table, a bar chart, an HTML page")
    c.add_argument("runs", nargs="+", metavar="RUN", help="run folders or metrics JSON files (evaluate --json)")
    c.add_argument("--out", help="also write an HTML page with the table and the chart")
    c.add_argument("--png", help="bar chart PNG (default: beside --out)")


def _add_inference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["auto", "torch", "onnxruntime", "openvino"],
                   help="torch (default for a run: scores exactly like `evaluate`), onnxruntime, openvino, or auto "
                        "(the fastest here; the default for an exported file)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="fp32 (default); bf16 on CPUs with bf16 support (torch, openvino) or GPUs; fp16 on GPUs")
    p.add_argument("--threads", type=int, help="CPU threads for the network (default: torch's)")
    p.add_argument("--tile", type=int, nargs="*", metavar="H W",
                   help="sliding window at native resolution for large images; no value = the training size")
    p.add_argument("--overlap", type=float, default=0.25, help="window overlap, a share of the window (default %(default)s)")
    p.add_argument("--tta", type=float, nargs="*", metavar="SCALE",
                   help="test-time augmentation: horizontal flip, at these scales (default 1), averaged in probability")


def _predictor_from_args(a, source):
    from pixelseg.inference import TTA, Predictor
    tile = None
    if a.tile is not None:
        if len(a.tile) not in (0, 1, 2):
            raise PixelsegError("--tile takes H W, one value for a square, or nothing for the training size")
        tile = True if not a.tile else (a.tile[0], a.tile[-1])
    tta = TTA(True, tuple(a.tta) if a.tta else (1.0,)) if a.tta is not None else None
    from pixelseg.inference.backends import EXPORTED_SUFFIXES
    backend = a.backend or ("auto" if Path(source).suffix.lower() in EXPORTED_SUFFIXES else "torch")
    return Predictor(source, a.device, backend=backend, precision=a.precision, threads=a.threads, tile=tile,
                     overlap=a.overlap, tta=tta)


def _add_export_commands(sub) -> None:
    x = sub.add_parser("export", help="a run as a self-describing ONNX / OpenVINO / TorchScript file, parity-checked")
    x.add_argument("run", help="run folder")
    x.add_argument("--format", default="onnx", choices=["onnx", "openvino", "torchscript"])
    x.add_argument("--out", help="output file (default RUN/export/model[.int8].onnx|.xml|.pt)")
    x.add_argument("--int8", action="store_true", help="static INT8 (QDQ, per-channel), calibrated on your images")
    x.add_argument("--calib", help="calibration images: a dataset root or a folder (default: the run's training data)")
    x.add_argument("--calib-count", type=int, default=300, help="calibration images (default %(default)s)")
    x.add_argument("--calib-method", default="minmax", choices=["minmax", "percentile", "entropy"])
    x.add_argument("--min-agreement", type=float, help="parity gate: share of pixels whose argmax must match PyTorch "
                                                       "(default 0.999 fp32, 0.99 INT8)")
    x.add_argument("--json", help="also write the export report to this JSON file")

    b = sub.add_parser("bench", help="latency p50/p95, throughput, peak memory per backend, as a table and JSON")
    b.add_argument("source", metavar="RUN|MODEL", help="run folder, or a registered model name (random weights)")
    b.add_argument("--size", type=int, nargs="+", metavar=("H", "W"), help="input size (default: the run's, 512 for a model)")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--backend", nargs="+", metavar="PATH", help="paths to measure (default all): eager torch torch-bf16 "
                   "onnxruntime openvino openvino-bf16 onnxruntime-int8 openvino-int8")
    b.add_argument("--int8", action="store_true", help="also measure the INT8 paths (exports and calibrates first)")
    b.add_argument("--calib", help="INT8 calibration images (default: the run's training data, else random images)")
    b.add_argument("--threads", type=int, default=2, help="CPU threads (default %(default)s)")
    b.add_argument("--iters", type=int, default=20, help="timed runs per path (default %(default)s)")
    b.add_argument("--encoder", help="encoder for a model name, e.g. resnet18")
    b.add_argument("--json", help="also write the results to this JSON file")


def _add_serve_command(sub) -> None:
    s = sub.add_parser("serve", help="HTTP API and web page for a run (POST /v1/segment, page at /)")
    s.add_argument("run", help="run folder")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="default %(default)s")
    s.add_argument("--backend", default="auto", help="inference backend: auto | torch | onnxruntime | openvino")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    s.add_argument("--workers", type=int, default=1, help="processes, each with its own model (default %(default)s)")
    s.add_argument("--threads", type=int, help="torch threads per worker (default: the cores divided by --workers)")
    s.add_argument("--api-key", help="require this key in the X-API-Key header (default: $PIXELSEG_API_KEY, else none)")
    s.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload (default %(default)s MB)")
    s.add_argument("--max-pixels", type=int, default=4096 * 4096,
                   help="largest image, width x height, checked before decoding (default %(default)s)")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds per request, upload to answer (default %(default)s)")
    s.add_argument("--max-queue", type=int, default=64, help="images waiting for the model before 429 (default %(default)s)")
    s.add_argument("--max-batch", type=int, default=4, help="images per model call under load (default %(default)s)")
    s.add_argument("--batch-wait-ms", type=float, default=0.0,
                   help="hold a lone request this long to batch it with others (default %(default)s)")
    s.add_argument("--no-cache", action="store_true",
                   help="do not keep recent label maps by upload hash (the page's label download then reruns the model)")
    s.add_argument("--no-access-log", action="store_true", help="do not log every request")


def cmd_serve(a) -> int:
    import os

    from pixelseg.serve.server import API_KEY_ENV, run_server
    from pixelseg.serve.settings import Batching, Limits, ServeSettings
    settings = ServeSettings(
        a.run, backend=a.backend, device=a.device, api_key=a.api_key or os.environ.get(API_KEY_ENV) or None,
        threads=a.threads, limits=Limits(max_upload_bytes=int(a.max_upload_mb * 1024 * 1024), max_pixels=a.max_pixels,
                                         timeout_s=a.timeout, max_queue=a.max_queue),
        batching=Batching(max_batch=a.max_batch, max_wait_ms=a.batch_wait_ms),
        **({"cache_pixels": 0} if a.no_cache else {}))
    run_server(settings, a.host, a.port, a.workers, access_log=not a.no_access_log)
    return 0


def cmd_report(a) -> int:
    from pixelseg.report import build_report
    if a.gallery < 0:
        raise PixelsegError(f"--gallery {a.gallery}: give the number of images to show (0 for none)")
    from rich.progress import Progress
    t0 = time.time()
    con = _console()
    # a bar on a terminal (a 2000-image split takes minutes on a CPU); nothing in logs and CI
    with Progress(console=con, transient=True, disable=not con.is_terminal) as bar:
        task = bar.add_task("analysing the split", total=None)
        out = build_report(a.run, a.data, a.split, a.out, a.device, a.batch_size, a.gallery,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    print(f"report: {out} ({time.time() - t0:.1f}s; PNGs in {Path(a.run) / 'report'})")
    return 0


def cmd_compare(a) -> int:
    from rich.table import Table

    from pixelseg.report import compare_runs
    res = compare_runs(a.runs, a.out, a.png)
    labels = res["labels"]
    t = Table(title="per-class IoU (%)")
    t.add_column("class")
    for lab in labels:
        t.add_column(lab, justify="right")
    if len(labels) == 2:
        t.add_column("Δ", justify="right")

    def cell(v):
        return "—" if v is None else f"{100 * v:.1f}"

    def delta(a_, b_):
        return "—" if a_ is None or b_ is None else f"{100 * (b_ - a_):+.1f}"
    for i, name in enumerate(res["classes"]):
        vals = [res["iou"][lab][i] for lab in labels]
        t.add_row(name, *map(cell, vals), *([delta(*vals)] if len(labels) == 2 else []))
    t.add_section()
    means = [res["mIoU"][lab] for lab in labels]
    t.add_row("mIoU", *map(cell, means), *([delta(*means)] if len(labels) == 2 else []), style="bold")
    _console().print(t)
    for key in ("png", "html"):
        if key in res:
            print(f"{key}: {res[key]}")
    return 0


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
                                       "num_workers", "threads", "amp", "device", "seed", "out", "accumulate",
                                       "clip_grad", "ema", "channels_last", "compile", "sync_bn", "sampling",
                                       "repeat_threshold", "checkpoint_minutes", "logger", "format",
                                       "binary_sigmoid")}
    opts.update({k: getattr(a, k) for k in ("init_from", "aux_weight", "teacher", "distill_temperature",
                                            "distill_weight")})
    opts["image_size"] = _size(a.image_size)
    opts["class_weights"] = _class_weights(a.class_weights)
    from pixelseg.engine.distributed import env_world
    if env_world()[0] != 0:   # under torchrun, rank 0 reports; the others only train
        train(a.data, a.model, config=a.config, resume=a.resume, **opts)
        return 0
    run = train(a.data, a.model, config=a.config, resume=a.resume, report=not a.no_report, **opts)
    _print_metrics(Path(run) / "metrics.json", f"validation of the best checkpoint ({run}/model.safetensors)")
    print(f"run folder: {run}")
    if not a.no_report:
        print(f"report: {Path(run) / 'report' / 'report.html'}")
    return 0


def _class_weights(values):
    if values is None:
        return None
    if len(values) == 1 and values[0].lower() == "auto":
        return "auto"
    try:
        return [float(v) for v in values]
    except ValueError:
        raise PixelsegError(f"--class-weights takes one number per class or 'auto', got {' '.join(values)}") from None


def _print_metrics(path_or_dict, title: str) -> dict:
    from pixelseg.metrics import format_table
    m = json.loads(Path(path_or_dict).read_text()) if not isinstance(path_or_dict, dict) else path_or_dict
    table = format_table(m)
    table.title = title
    _console().print(table)
    return m


def _add_tune_threshold_command(sub) -> None:
    tt = sub.add_parser("tune-threshold", help="binary_sigmoid runs: the foreground threshold with the best mIoU on a "
                                               "labelled split, written into the run")
    tt.add_argument("run", help="run folder trained with --binary-sigmoid")
    tt.add_argument("--data", help="dataset root (default: the one the run was trained on)")
    tt.add_argument("--split", default="val", help="labelled split to tune on (default %(default)s)")
    tt.add_argument("--device", default="auto")
    tt.add_argument("--json", help="also write the result to this JSON file")


def cmd_tune_threshold(a) -> int:
    from pixelseg.api import tune_threshold
    from pixelseg.fileio import write_json
    r = tune_threshold(a.run, a.data, a.split, a.device)
    print(f"{a.split} split of {r['data']} ({r['images']} images)")
    print(f"threshold {r['threshold_before']:.2f} -> {r['threshold']:.2f}")
    print(f"mIoU      {r['mIoU_before']:.4f} -> {r['mIoU']:.4f}")
    print(f"written to {Path(a.run) / 'model.json'}: predict, evaluate, export and serve use it")
    if a.json:
        write_json(a.json, r)
    return 0


def cmd_evaluate(a) -> int:
    from pixelseg.api import evaluate
    from pixelseg.fileio import write_json
    report = not a.no_report       # RUN/report/ for a run, PRED_DIR/report/ for label maps
    m = evaluate(a.run, a.data, a.split, a.pred_dir, a.device, report=report)
    _print_metrics(m, f"{a.split} split of {a.data}: {m['images']} images, {m['source']}")
    if report:
        print(f"report: {m['report']}")
    if a.json:
        write_json(a.json, m)
        print(f"metrics written to {a.json}")
    return 0


def cmd_predict(a) -> int:
    from pixelseg.inference.predictor import list_inputs
    from pixelseg.inference.video import is_video
    if not 0 <= a.alpha <= 1:
        raise PixelsegError(f"--alpha {a.alpha} is outside 0..1")
    videos = [i for i in a.inputs if is_video(i)]
    if videos:
        if len(a.inputs) != 1:
            raise PixelsegError("give one video (or camera:N) per call; images and folders go in another call")
        return _predict_video(a, videos[0])
    from pixelseg.engine.distributed import rank_device, shard_inputs
    inputs, rank, world = shard_inputs(list_inputs(a.inputs))   # under torchrun: this rank's share
    a.device = rank_device(a.device)
    pred = _predictor_from_args(a, a.run)
    n = len(inputs)
    t0 = time.time()
    with _progress(n, "predicting") as advance:
        written = pred.predict_paths(inputs, a.out, overlay=a.overlay, alpha=a.alpha, batch_size=a.batch_size,
                                     progress=advance) if inputs else []
    dt = time.time() - t0
    print(f"{f'rank {rank}/{world}: ' if world > 1 else ''}{n} image(s) -> {a.out} ({len(written)} files, {dt:.1f}s, {n / max(dt, 1e-9):.1f} img/s, "
          f"backend {pred.backend_name})")
    return 0


def _progress(total: int | None, what: str):
    """A rich progress bar on a terminal; nothing when output is captured (logs, tests)."""
    import contextlib
    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from rich.progress import Progress

    @contextlib.contextmanager
    def bar():
        with Progress(console=_console(), transient=True) as prog:
            task = prog.add_task(what, total=total)
            yield lambda n: prog.advance(task, n)
    return bar()


def _predict_video(a, source: str) -> int:
    from pixelseg.inference.video import predict_video
    pred = _predictor_from_args(a, a.run)
    with _progress(None, f"{source}") as advance:
        r = predict_video(pred, source, a.out, alpha=a.alpha, max_frames=a.max_frames, progress=advance)
    print(f"{r.frames} frames ({r.width}x{r.height}) -> {r.out}: {r.fps:.1f} fps end to end "
          f"(decode, infer, overlay, encode), network {r.network_fps:.1f} fps, backend {pred.backend_name}")
    return 0


def cmd_export(a) -> int:
    from pixelseg.export import export_run
    from pixelseg.fileio import write_json
    r = export_run(a.run, a.format, a.out, int8=a.int8, calib=a.calib, calib_count=a.calib_count,
                   calib_method=a.calib_method, min_agreement=a.min_agreement)
    kind = "INT8 " if r.int8 else ""
    print(f"exported {kind}{r.format} -> {r.path} in {r.seconds:.1f}s")
    print(f"parity vs PyTorch on {r.images} images of {r.image_source}: argmax agreement {r.agreement:.4%}, "
          f"max |logit difference| {r.max_abs_diff:.3g}")
    if r.miou:
        print(f"val mIoU: fp32 {r.miou['fp32']:.4f}, INT8 {r.miou['int8']:.4f} ({100 * r.miou['delta']:+.2f} points)")
    if a.json:
        write_json(a.json, r.to_dict())
    return 0


def cmd_bench(a) -> int:
    from rich.table import Table

    from pixelseg.fileio import write_json
    from pixelseg.inference.bench import bench
    size = _size(a.size) if a.size else None
    res = bench(a.source, size, a.batch, a.backend, a.threads, a.iters, int8=a.int8, calib=a.calib,
                encoder=a.encoder, log=lambda m: print(m, file=sys.stderr))
    s = res["setup"]
    t = Table(title=f"{s['model']} {s['size'][0]}x{s['size'][1]} batch {s['batch']}, {s['threads']} threads, {s['cpu']}")
    for c in ("path", "p50 ms", "p95 ms", "img/s", "peak MB", "speedup", "agreement"):
        t.add_column(c, justify="left" if c == "path" else "right")
    for r in res["rows"]:
        t.add_row(r["path"], f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['throughput']:.1f}", f"{r['peak_mb']:.0f}",
                  f"{r['speedup']:.2f}x", f"{r['agreement']:.2%}")
    _console().print(t)
    if a.json:
        write_json(a.json, res)
    return 0


def cmd_verify(a) -> int:
    from pixelseg.data.commands import run_verify
    return run_verify(a)


def cmd_models(a) -> int:
    from rich.table import Table

    from pixelseg.models.profile import model_rows, select
    size = _size(a.size)
    if a.classes < 1:
        raise PixelsegError(f"--classes {a.classes}: give a positive number of classes")
    rows = model_rows(select(a.filter, a.family), a.classes, size)
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    t = Table(title=f"pixelseg models: {a.classes} classes, RGB, GFLOPs = multiply-accumulates at {size[0]}x{size[1]}")
    for c, just in (("name", "left"), ("family", "left"), ("default encoder", "left"), ("params", "right"),
                    ("GFLOPs", "right"), ("ONNX", "left"), ("aux", "right"), ("typical use", "left")):
        t.add_column(c, justify=just, no_wrap=c != "typical use")
    for r in rows:
        t.add_row(r["name"], r["family"], r["encoder"], f"{r['params'] / 1e6:.2f}M", f"{r['gflops']:.1f}",
                  "yes" if r["onnx"] else f"no: {r['onnx_note']}", str(r["aux_heads"] or ""), r["use"])
    from rich.console import Console
    con = _console()
    # piped or logged: a fixed wide table instead of rich's 80 columns, which would fold every row
    (con if con.is_terminal else Console(width=160)).print(t)
    return 0


def cmd_data(a) -> int:
    if a.data_command != "synth":
        from pixelseg.data.commands import run_data_command
        return run_data_command(a)
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
    train(data, out=str(run), max_minutes=a.max_minutes, report=True)
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
    print(f"  report:      {run / 'report' / 'report.html'}  (curves, per-class IoU, confusion, worst images)")
    return 0


COMMANDS = {"quickstart": cmd_quickstart, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "verify-dataset": cmd_verify, "models": cmd_models, "data": cmd_data,
            "report": cmd_report, "compare": cmd_compare, "serve": cmd_serve,
            "export": cmd_export, "bench": cmd_bench, "tune-threshold": cmd_tune_threshold}


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


def exit_process(code) -> None:
    """sys.exit(code), except under torchrun: there the process leaves without the interpreter's finalization.
    gloo's worker threads can still hold work objects whose tensors are freed after Python is gone, which
    aborted a finished rank now and then ("terminate called without an active exception", SIGABRT; see
    pytorch/pytorch#179291). By then every output is closed and fsynced (atomic writes) and the process group
    destroyed, so nothing is lost."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)
    sys.exit(code)


if __name__ == "__main__":
    exit_process(main())
