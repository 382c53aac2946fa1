"""TorchScript export (traced, dynamic shapes through ExportWrapper) with the description as an extra file."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from pixelseg.errors import PixelsegError
from pixelseg.deploy.onnx import ExportWrapper, trace_input
from pixelseg.fileio import atomic_path

EXTRA = "pixelseg.json"


def export_torchscript(model, info, path: Path, meta: dict) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(ExportWrapper(model).eval(), trace_input(info), check_trace=False)
        except Exception as e:
            raise PixelsegError(f"{info.model}: cannot be traced to TorchScript ({str(e).splitlines()[0][:200]})") from None
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={EXTRA: json.dumps(meta)})
    return Path(path)


def load_torchscript(path: Path):
    """(module, description); only for files this process exported (TorchScript archives hold pickled data)."""
    extra = {EXTRA: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:
        raise PixelsegError(f"{path}: not a readable TorchScript file ({str(e).splitlines()[0][:160]}); export it again") from None
    return module.eval(), json.loads(extra[EXTRA] or "{}")
