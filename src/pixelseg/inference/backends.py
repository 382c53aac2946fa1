"""Inference backends: one call, normalized N x C x H x W float32 in, N x K x H x W logits out.

    torch        the run's PyTorch model: inference_mode, channels_last, optional bf16/fp16 autocast
    onnxruntime  an ONNX file (exported from the run and cached, or given directly) on ONNX Runtime
    openvino     the same ONNX file (or an OpenVINO IR .xml) on OpenVINO; precision fp32 by default
                 (OpenVINO silently runs bf16 on CPUs with AMX unless told otherwise)
    auto         the fastest one available for the device (see `resolve_backend`)

Every backend accepts any batch, height and width (the exported graphs have dynamic axes), so the
Predictor's whole-image, sliding-window and TTA modes work the same on all of them.

Arrows run one way: inference imports export (the file runtimes in deploy/runtime.py, the on-demand
export of a run, an exported file's metadata); export never imports inference.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import torch

from pixelseg.errors import PixelsegError
from pixelseg.deploy.runtime import OnnxRuntimeBackend, OpenVinoBackend, available, require_module

__all__ = ["BACKENDS", "EXPORTED_SUFFIXES", "OnnxRuntimeBackend", "OpenVinoBackend", "TorchBackend", "available",
           "cached_onnx", "make_backend", "require_module", "resolve_backend"]

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "fp16")
EXPORTED_SUFFIXES = (".onnx", ".xml")


def resolve_backend(backend: str, device: torch.device, precision: str = "fp32", exported: bool = False) -> str:
    """'auto' -> a concrete backend: the one rule that predict, serve, the API and bench share.

    On a GPU PyTorch is the fast path (cuDNN, fp16). On a CPU OpenVINO when installed (with onnx, which the
    run's export needs; the export is cached beside the run, see `cached_onnx`): benchmarks/inference.py on a
    quiet 2-core Xeon measured it 1.58x eager for U-Net/resnet18 at 512x512 in fp32 (ONNX Runtime 1.60x,
    within noise) and 2x PyTorch for LR-ASPP at 1024x512 end to end, at 100% argmax agreement; with bf16 or
    INT8 it is 7-9x eager. Otherwise PyTorch. An exported file (`exported`) has no PyTorch model: OpenVINO on
    a CPU when installed, else ONNX Runtime."""
    if backend not in BACKENDS:
        raise PixelsegError(f"unknown backend '{backend}'; valid: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise PixelsegError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if backend != "auto":
        return backend
    openvino = device.type == "cpu" and available("openvino")
    if exported:
        return "openvino" if openvino else "onnxruntime"
    if openvino and importlib.util.find_spec("onnx") is not None:
        return "openvino"
    return "torch"


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str = "fp32",
                 channels_last: bool | None = None):
        if precision == "fp16" and device.type == "cpu":
            raise PixelsegError("precision fp16 is for GPUs; on a CPU use bf16 (or fp32)")
        self.device, self.precision = device, precision
        # channels_last lets oneDNN/cuDNN pick their fastest convolution kernels without layout reorders.
        # Not by default for CPU fp32: there it changes logits by ~1e-5 against `pixelseg evaluate`
        # (contiguous layout), enough to flip a boundary pixel, and predict must score exactly like evaluate.
        if channels_last is None:
            channels_last = device.type == "cuda" or precision != "fp32"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format).eval()
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        if self.dtype is None:
            return self.model(x).float()
        with torch.autocast(self.device.type, dtype=self.dtype):
            return self.model(x).float()


def cached_onnx(info, model: torch.nn.Module) -> Path:
    """The run's model as ONNX, exported once and reused: keyed by the hash of the weights and model.json, kept
    in the user's cache (fileio.user_cache("onnx"); the temp folder when that is not writable), never in the run
    folder: prediction and serving only read a run."""
    from pixelseg.deploy.onnx import export_onnx
    from pixelseg.fileio import user_cache

    h = hashlib.sha256()
    with open(info.weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps(info.to_dict(), sort_keys=True).encode())
    name = f"model-{h.hexdigest()[:16]}.onnx"
    for folder in (user_cache("onnx"), Path(tempfile.gettempdir()) / "pixelseg-cache" / "onnx"):
        target = folder / name
        if target.is_file():
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                export_onnx(model, info, target)
                return target
        except PermissionError:
            continue
    raise PixelsegError(f"{user_cache('onnx')}: cannot write the ONNX cache there or in the temp folder; "
                        "export once with `pixelseg export RUN --format onnx` and predict with the .onnx file")


def make_backend(backend: str, device: torch.device, *, model: torch.nn.Module | None = None, info=None,
                 path: Path | None = None, threads: int | None = None, precision: str = "fp32"):
    """A concrete backend over either a run's PyTorch model (model + info) or an exported file (path)."""
    if backend == "torch":
        if model is None:
            raise PixelsegError(f"{path}: an exported model runs on --backend onnxruntime or openvino, not torch; "
                                "give the run folder to use PyTorch")
        return TorchBackend(model, device, precision)
    if path is None:
        require_module("onnx", f"backend '{backend}'")  # the export needs it before the runtime is even reached
        path = cached_onnx(info, model)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(path, device, threads, precision)
    if Path(path).suffix == ".xml" and backend != "openvino":
        raise PixelsegError(f"{path}: an OpenVINO IR runs on --backend openvino only")
    return OpenVinoBackend(path, device, threads, precision)
