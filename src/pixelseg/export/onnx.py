"""ONNX export with dynamic batch, height and width, and the run's description inside the file.

The exported graph carries `metadata_props["pixelseg"]`: the run's model.json (architecture, class
table, preprocessing) plus how it was exported, so an .onnx file alone is enough to predict.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixelseg.errors import PixelsegError
from pixelseg.fileio import atomic_path

META_KEY = "pixelseg"
OPSET = 17
INPUT, OUTPUT = "image", "logits"


class ExportWrapper(nn.Module):
    """The Segmenter's pad -> net -> resize -> crop with the padding always in the graph.

    Segmenter skips F.pad when the size is already a multiple of its divisor; a tracer records only
    the branch it saw, so an export traced at 512x512 would silently drop the padding for every other
    size. Here the pad amounts are shape arithmetic (zero when not needed), which the tracer keeps.
    Export quirks live here, never in a model's forward.
    """

    def __init__(self, segmenter: nn.Module):
        super().__init__()
        self.net, self.divisor = segmenter.net, segmenter.divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        xp = F.pad(x, (0, (-w) % self.divisor, 0, (-h) % self.divisor))
        y = self.net(xp)
        if isinstance(y, dict):
            y = y["out"]
        if y.shape[-2:] != xp.shape[-2:]:   # architecture-dependent (1/8 output of LR-ASPP), not size-dependent
            y = F.interpolate(y, size=xp.shape[-2:], mode="bilinear", align_corners=False)
        return y[..., :h, :w]


def description(info, **export: object) -> dict:
    d = info.to_dict()
    d["export"] = export
    return d


def _trace_input(info) -> torch.Tensor:
    # an odd size on purpose: the traced pad amounts must be non-trivial expressions of the input shape
    h, w = info.preprocessing.image_size
    return torch.randn(1, info.preprocessing.in_channels, h + 3, w + 5)


def export_onnx(model: nn.Module, info, path: str | Path, opset: int = OPSET, **export_meta) -> Path:
    """Write `model` (a run's Segmenter, eval mode) as ONNX with dynamic N, H, W and the run's metadata."""
    import onnx

    path = Path(path)
    wrapper = ExportWrapper(model).eval()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tracer warnings about shape arithmetic are the point of ExportWrapper
        try:
            # TorchScript-based exporter: dynamic axes on the traced shape arithmetic are exact and fast
            # (under a second for U-Net); torch.export would need symbolic-shape guards for the padding.
            torch.onnx.export(wrapper, (_trace_input(info),), str(tmp), dynamo=False, opset_version=opset,
                              input_names=[INPUT], output_names=[OUTPUT], do_constant_folding=True,
                              dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"},
                                            OUTPUT: {0: "batch", 2: "height", 3: "width"}})
        except Exception as e:
            raise PixelsegError(f"{info.model}: cannot be exported to ONNX with dynamic shapes "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); use --backend torch") from None
        proto = onnx.load(str(tmp))
        set_metadata(proto, description(info, format="onnx", opset=opset, **export_meta))
        onnx.save(proto, str(tmp))
    return path


def set_metadata(proto, meta: dict) -> None:
    for p in list(proto.metadata_props):
        if p.key == META_KEY:
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.producer_name = "pixelseg"


def read_metadata(path: str | Path) -> dict:
    """The pixelseg description stored in an exported .onnx or OpenVINO .xml; a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PixelsegError(f"{path}: exported model not found")
    if path.suffix == ".xml":
        from pixelseg.export.openvino_ir import read_ir_metadata
        return read_ir_metadata(path)
    import onnx
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise PixelsegError(f"{path}: not a readable ONNX file ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                            "the file is damaged — export it again with `pixelseg export`") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise PixelsegError(f"{path}: ONNX file without pixelseg metadata (class table, preprocessing); "
                            "export it with `pixelseg export RUN`")
    return parse_meta(props[META_KEY], path)


def parse_meta(text: str, path: Path) -> dict:
    try:
        meta = json.loads(text)
        if not isinstance(meta, dict) or "classes" not in meta or "preprocessing" not in meta:
            raise ValueError("classes or preprocessing missing")
    except (json.JSONDecodeError, ValueError) as e:
        raise PixelsegError(f"{path}: damaged pixelseg metadata ({e}); export it again with `pixelseg export`") from None
    return meta


def info_from_meta(meta: dict, path: Path):
    """A RunInfo for an exported file, so the Predictor treats it exactly like a run folder."""
    from pixelseg.data.classes import ClassTable
    from pixelseg.run import Preprocessing, RunInfo
    try:
        return RunInfo(Path(path), meta["model"]["name"], meta["model"].get("encoder"),
                       ClassTable.from_dict(meta["classes"], str(path)), Preprocessing.from_dict(meta["preprocessing"]),
                       meta.get("best") or {})
    except (KeyError, TypeError, ValueError) as e:
        raise PixelsegError(f"{path}: damaged pixelseg metadata ({type(e).__name__}: {e}); export it again") from None
