"""`pixelseg export`: a run folder -> a self-describing ONNX / OpenVINO / TorchScript file, checked.

After writing, a parity check runs the exported model and the run's PyTorch model on real images of the
run's data and compares logits and argmax; the file only reaches its destination when they agree
(fp32: >= 99.9% argmax agreement and logits within 1e-3 relative; INT8: >= 99% agreement by default).
For INT8 the check also reports the mIoU of both models on the run's validation split.

export imports nothing from inference (inference imports export: see deploy/runtime.py); the exported
file is run through deploy/runtime.py, the PyTorch reference is the run's model called directly.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pixelseg.errors import PixelsegError

FORMATS = ("onnx", "openvino", "torchscript")
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".pt"}
FP32_MIN_AGREEMENT, FP32_MAX_REL_DIFF = 0.999, 1e-3
INT8_MIN_AGREEMENT = 0.99


@dataclass
class ExportReport:
    path: str
    format: str
    int8: bool
    images: int                          # parity images
    image_source: str                    # where they came from
    max_abs_diff: float                  # max |logit_exported - logit_torch|
    agreement: float                     # share of pixels with the same argmax
    seconds: float
    calib_images: int = 0
    miou: dict = field(default_factory=dict)   # INT8: {"fp32", "int8", "delta", "images"} on the val split

    def to_dict(self) -> dict:
        return asdict(self)


def default_out(run: Path, fmt: str, int8: bool) -> Path:
    from pixelseg.run.folder import RunFolder
    return RunFolder(run).export_dir / f"model{'.int8' if int8 else ''}{SUFFIX[fmt]}"


def _check_combination(fmt: str, int8: bool, out: Path) -> None:
    from pixelseg.deploy.runtime import require_module as _need
    if fmt not in FORMATS:
        raise PixelsegError(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    if int8 and fmt == "torchscript":
        raise PixelsegError("--int8 makes a QDQ ONNX model for ONNX Runtime / OpenVINO; use --format onnx or openvino")
    if out.suffix != SUFFIX[fmt]:
        raise PixelsegError(f"--out {out}: a {fmt} file must end in {SUFFIX[fmt]}")
    if fmt in ("onnx", "openvino"):
        _need("onnx", f"export --format {fmt}", "(or export --format torchscript, which needs nothing more)")
    if fmt == "onnx" or int8:
        _need("onnxruntime", f"export --format {fmt}" + (" --int8" if int8 else ""), None)
    if fmt == "openvino":
        _need("openvino", "openvino")


def parity_images(info, count: int, log=print) -> tuple[list[np.ndarray], str]:
    """(images, description): the run's val split when the data is still there (opened as
    `pixelseg evaluate` opens it, measure.opener), else its test or train split, else seeded random images
    (then the report says so, and so does a line in the terminal)."""
    from pixelseg.data.io import read_image
    from pixelseg.measure.opener import open_split
    from pixelseg.run.folder import RunFolder

    folder = RunFolder(info.path)
    root = folder.data_root()
    if root is not None:
        for split in ("val", "test", "train"):
            try:
                labelled = open_split(info.path, root, split, verb="check parity", check=False, need_masks=False)
            except PixelsegError:
                continue
            c = info.preprocessing.in_channels
            return [read_image(s.image, c) for s in labelled.samples[:count]], f"{root} ({split} split)"
    given = folder.data_settings().get("root") if folder.config_path.is_file() else None
    log(f"note: parity checked on {count} random images: the run's data "
        + (f"({given}) was not found or not readable" if given else "is not recorded in the run folder"))
    rng = np.random.default_rng(0)
    h, w = info.preprocessing.image_size
    return ([rng.integers(0, 256, (h, w, info.preprocessing.in_channels), dtype=np.uint8) for _ in range(count)],
            "random images (the run's data was not found)")


def compare(reference, candidate, info, images: list[np.ndarray]) -> tuple[float, float, float]:
    """(max abs logit difference, argmax agreement, max |logit| of the reference) at the training size,
    plus each image at an off-grid size, which proves the exported graph's dynamic height and width."""
    from pixelseg.data.preprocess import preprocess
    diff, same, total, scale = 0.0, 0, 0, 0.0
    for i, image in enumerate(images):
        x = preprocess(image, info.preprocessing)[None]
        inputs = [x]
        if i == 0:
            h, w = x.shape[-2:]
            inputs.append(torch.nn.functional.interpolate(x, size=(h * 3 // 4 + 7, w * 5 // 4 + 3), mode="bilinear"))
        for xi in inputs:
            ref = reference(xi)
            try:
                got = candidate(xi)
            except PixelsegError:
                raise
            except Exception as e:
                raise PixelsegError(f"the exported model fails at input {tuple(xi.shape)} ({str(e).splitlines()[0][:160]}); "
                                    "this model cannot be exported with dynamic shapes") from None
            if tuple(got.shape) != tuple(ref.shape):
                raise PixelsegError(f"the exported model returns {tuple(got.shape)} for input {tuple(xi.shape)}, PyTorch "
                                    f"{tuple(ref.shape)}: this model cannot be exported with dynamic shapes")
            diff = max(diff, float((got - ref).abs().max()))
            scale = max(scale, float(ref.abs().max()))
            same += int((got.argmax(1) == ref.argmax(1)).sum())
            total += ref[:, 0].numel()
    return diff, same / max(total, 1), scale


def val_split(info, log=print):
    """The run's val split, opened as `pixelseg evaluate` opens it (measure.opener); None, with a note, when the
    run's data or its val split is not there."""
    from pixelseg.measure.opener import open_split
    try:
        return open_split(info.path, None, "val", verb="measure the export", check=False)
    except PixelsegError as e:
        log(f"note: no val mIoU for the export ({e})")
        return None


def val_miou(score, info, labelled, limit: int = 500) -> float:
    """mIoU of `score` (the PyTorch reference, or an exported backend: N x C x H x W in, logits out) on `labelled`
    (val_split), scored exactly as `pixelseg evaluate` does it (the one evaluation pass), on at most `limit` images."""
    from pixelseg.measure.evaluation import confusion_matrix, eval_window
    from pixelseg.measure.metrics import mean_iou

    cm = confusion_matrix(score, labelled.loader(limit=limit), info.classes.num_classes, info.classes.ignore_index,
                          torch.device("cpu"), window=eval_window(info.preprocessing))
    return float(mean_iou(cm.matrix))


def export_run(run, fmt: str = "onnx", out=None, *, int8: bool = False, calib=None, calib_count: int = 300,
               calib_method: str = "minmax", min_agreement: float | None = None, parity_count: int = 8,
               threads: int | None = None, log=print) -> ExportReport:
    """Export, check parity against PyTorch, and only then move the file to `out`. Returns the report."""
    from pixelseg.deploy.metadata import description
    from pixelseg.deploy.onnx import export_onnx
    from pixelseg.deploy.runtime import OnnxRuntimeBackend, OpenVinoBackend
    from pixelseg.run.folder import RunFolder

    t0 = time.perf_counter()
    info = RunFolder(run).info()
    out = Path(out) if out else default_out(info.path, fmt, int8)
    _check_combination(fmt, int8, out)
    min_agreement = min_agreement if min_agreement is not None else (INT8_MIN_AGREEMENT if int8 else FP32_MIN_AGREEMENT)
    cpu = torch.device("cpu")
    model = info.load_model(cpu)
    reference = _reference(info.load_model(cpu))   # its own copy: tracing must not touch the reference
    meta = description(info, format=fmt, int8=int8)
    calib_n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    # staged beside the destination (same filesystem), so the final step is an atomic rename
    with tempfile.TemporaryDirectory(prefix=".pixelseg-export-", dir=out.parent) as tmp:
        tmp = Path(tmp)
        if fmt == "torchscript":
            from pixelseg.deploy.torchscript import export_torchscript, load_torchscript
            staged = export_torchscript(model, info, tmp / "model.pt", meta)
            module, _ = load_torchscript(staged)
            def candidate(x: torch.Tensor) -> torch.Tensor:
                with torch.inference_mode():
                    return module(x).float()
        else:
            staged = export_onnx(model, info, tmp / "model.onnx", int8=False)
            if int8:
                from pixelseg.deploy.quantize import calibration_images, quantize_int8
                paths = calibration_images(calib, info, calib_count)
                calib_n = len(paths)
                log(f"calibrating INT8 ({calib_method}) on {calib_n} images ...")
                meta["export"].update(calib_images=calib_n, calib_method=calib_method)
                staged = quantize_int8(staged, tmp / "model.int8.onnx", paths, info, description(
                    info, format="onnx", int8=True, calib_images=calib_n, calib_method=calib_method), calib_method)
            if fmt == "openvino":
                from pixelseg.deploy.openvino_ir import onnx_to_ir
                staged = onnx_to_ir(staged, tmp / "model.xml", meta)
                candidate = OpenVinoBackend(staged, cpu, threads, "fp32")
            else:
                candidate = OnnxRuntimeBackend(staged, cpu, threads)
        images, source = parity_images(info, parity_count, log)
        diff, agreement, scale = compare(reference, candidate, info, images)
        miou = {}
        labelled = val_split(info, log) if int8 else None
        if labelled is not None:
            m32, m8 = val_miou(reference, info, labelled), val_miou(candidate, info, labelled)
            miou = {"fp32": m32, "int8": m8, "delta": m8 - m32}
        report = ExportReport(str(out), fmt, int8, len(images), source, diff, agreement, 0.0, calib_n, miou)
        bad = agreement < min_agreement or (not int8 and diff > FP32_MAX_REL_DIFF * max(1.0, scale))
        if bad:
            raise PixelsegError(
                f"parity check failed for {out.name}: argmax agreement {agreement:.4%} (need {min_agreement:.2%}), "
                f"max |logit difference| {diff:.3g} on {len(images)} images of {source}; nothing was written — "
                + ("calibrate on more representative images (--calib, --calib-count) or lower --min-agreement"
                   if int8 else "report this model; use --backend torch meanwhile"))
        if fmt == "openvino":   # two files; the .bin first so an .xml never points at missing weights
            os.replace(staged.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(staged, out)
    report.seconds = time.perf_counter() - t0
    return report


def _reference(model: torch.nn.Module):
    """The run's PyTorch model as `pixelseg evaluate` runs it: fp32, default (contiguous) layout."""
    def call(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x).float()
    return call
