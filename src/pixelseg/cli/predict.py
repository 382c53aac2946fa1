"""`pixelseg predict`: label maps for images and folders (inference/jobs.py), or an overlaid video."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixelseg.cli.common import POSITIVE_INT, add_max_pixels, bounded, progress
from pixelseg.config import MAX_OVERLAP
from pixelseg.errors import PixelsegError


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="label maps (and overlays) for images, folders, videos or a camera")
    p.add_argument("run", help="run folder, or a model file `pixelseg export` wrote (.onnx, .xml)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images, folders, one video file, or camera:N")
    add_max_pixels(p)
    p.add_argument("--max-raster-pixels", type=POSITIVE_INT, metavar="N",
                   help="a GeoTIFF above --max-pixels is predicted block by block up to N pixels (default 2**32, "
                        "65536 squared, or $PIXELSEG_MAX_RASTER_PIXELS); above it, refused before any work")
    p.add_argument("--out", required=True, help="folder for label maps (never an input folder: inputs are not "
                   "replaced); for a video or camera an output video (.mp4, .avi)")
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png with a legend")
    p.add_argument("--vector", choices=["geojson", "gpkg"], help="also write <stem>.geojson or <stem>.gpkg: a polygon "
                   "per region and class with its name and area, in the input's CRS for a GeoTIFF (else pixel "
                   "coordinates); gpkg needs the geo extra")
    p.add_argument("--alpha", type=bounded(float, "number in [0, 1]", ge=0, le=1), default=0.5,
                   help="overlay opacity (default %(default)s)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=4, help="images per network call (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    add_inference_args(p)
    p.add_argument("--uncertainty", action="store_true",
                   help="also write <stem>_confidence.png (max class probability) and <stem>_entropy.png (entropy / "
                        "log K), 8-bit grayscale: value = pixel / 255; the run's temperature applies (calibrate)")
    p.add_argument("--uncertainty-npy", action="store_true",
                   help="with --uncertainty: also <stem>_confidence.npy and <stem>_entropy.npy (float32)")
    p.add_argument("--max-frames", type=POSITIVE_INT, help="video/camera: stop after this many frames")
    p.set_defaults(handler=cmd_predict)


def add_inference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "openvino"],
                   help="auto (default: the fast path for the device, the same as `serve`), torch (eager PyTorch, "
                        "exactly what `evaluate` scores), onnxruntime, openvino")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="fp32 (default); bf16 on CPUs with bf16 support (torch, openvino) or GPUs; fp16 on GPUs")
    p.add_argument("--threads", type=POSITIVE_INT, help="CPU threads for the network (default: torch's)")
    p.add_argument("--tile", type=POSITIVE_INT, nargs="*", metavar="H W",
                   help="sliding window at native resolution for large images; no value = the training size")
    p.add_argument("--overlap", type=bounded(float, f"number in [0, {MAX_OVERLAP}]", ge=0, le=MAX_OVERLAP), default=0.25,
                   help="window overlap, a share of the window (default %(default)s)")
    p.add_argument("--tta", type=bounded(float, "positive number", gt=0), nargs="*", metavar="SCALE",
                   help="test-time augmentation: horizontal flip, at these scales (default 1), averaged in probability")


def predictor_from_args(a, source, device: str | None = None):
    """A Predictor as the flags ask; the backend is the library's choice (`auto`, see backends.resolve_backend)."""
    from pixelseg.inference.tta import TTA
    from pixelseg.inference.predictor import Predictor
    tile = None
    if a.tile is not None:
        if len(a.tile) not in (0, 1, 2):
            raise PixelsegError("--tile takes H W, one value for a square, or nothing for the training size")
        tile = True if not a.tile else (a.tile[0], a.tile[-1])
    tta = TTA(True, tuple(a.tta) if a.tta else (1.0,)) if a.tta is not None else None
    from pixelseg.api import hub_source      # hf://user/name (or user/name): the pulled run folder
    return Predictor(hub_source(source), device or a.device, backend=a.backend, precision=a.precision, threads=a.threads,
                     tile=tile, overlap=a.overlap, tta=tta)


def cmd_predict(a) -> int:
    from pixelseg.run.folder import RunFolder
    if RunFolder(a.run).is_run():        # a damaged model.json is one line before torch loads (seconds on a busy machine)
        RunFolder(a.run).info()
    from pixelseg.inference import jobs
    from pixelseg.inference.video import is_video
    videos = [i for i in a.inputs if is_video(i)]
    if videos:
        if len(a.inputs) != 1:
            raise PixelsegError("give one video (or camera:N) per call; images and folders go in another call")
        if a.uncertainty or a.uncertainty_npy:
            raise PixelsegError("--uncertainty writes maps beside image label maps; it does not apply to a video")
        if a.vector:
            raise PixelsegError("--vector writes polygons beside image label maps; it does not apply to a video")
        return _predict_video(a, videos[0])
    if a.uncertainty_npy and not a.uncertainty:
        raise PixelsegError("--uncertainty-npy adds .npy files to --uncertainty's maps: pass --uncertainty too")
    if a.max_raster_pixels is not None:
        from pixelseg.inference.rasters import set_max_raster_pixels
        set_max_raster_pixels(a.max_raster_pixels)
    # checked before the model is loaded: nothing written yet
    plan = jobs.plan(a.inputs, a.out, a.overlay, a.uncertainty, a.vector)
    pred = predictor_from_args(a, a.run, jobs.rank_device(a.device))
    with progress(len(plan.paths), "predicting") as advance:
        r = jobs.run(pred, plan, overlay=a.overlay, alpha=a.alpha, batch_size=a.batch_size, progress=advance,
                     uncertainty=a.uncertainty, uncertainty_npy=a.uncertainty_npy, vector=a.vector)
    rank = f"rank {r.rank}/{r.world}: " if r.world > 1 else ""
    print(f"{rank}{r.images} image(s) -> {a.out} ({len(r.written)} files, {r.seconds:.1f}s, "
          f"{r.images_per_second:.1f} img/s, backend {r.backend})")
    for line in pred.scale_warnings():
        print(f"warning: {line}", file=sys.stderr)
    return 0


def _predict_video(a, source: str) -> int:
    from pixelseg.inference.video import predict_video
    out = Path(a.out)
    if not source.startswith("camera:") and out.exists() and out.resolve() == Path(source).resolve():
        raise PixelsegError(f"{out}: is the input video; give another --out file")
    pred = predictor_from_args(a, a.run)
    with progress(None, f"{source}") as advance:
        r = predict_video(pred, source, a.out, alpha=a.alpha, max_frames=a.max_frames, progress=advance)
    print(f"{r.frames} frames ({r.width}x{r.height}) -> {r.out}: {r.fps:.1f} fps end to end "
          f"(decode, infer, overlay, encode), network {r.network_fps:.1f} fps, backend {pred.backend_name}")
    return 0
