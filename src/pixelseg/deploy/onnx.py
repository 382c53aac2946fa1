"""ONNX export with dynamic batch, height and width, and the run's description inside the file.

The exported graph carries `metadata_props["pixelseg"]` (deploy/metadata.py): the run's model.json
(architecture, class table, preprocessing) plus how it was exported, so an .onnx file alone is enough
to predict. ExportWrapper and trace_input are shared with the TorchScript export.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixelseg.errors import PixelsegError
from pixelseg.deploy.metadata import description, set_metadata
from pixelseg.fileio import atomic_path

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
        from pixelseg.models.outputs import TwoClassLogits
        # a one-channel sigmoid run is predicted as two classes (models/outputs.py): its fixed logit goes in too
        self.offset = segmenter.offset if isinstance(segmenter, TwoClassLogits) else None
        inner = segmenter.model if isinstance(segmenter, TwoClassLogits) else segmenter
        self.net, self.divisor = inner.net, inner.divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        xp = F.pad(x, (0, (-w) % self.divisor, 0, (-h) % self.divisor))
        y = self.net(xp)
        if isinstance(y, dict):
            y = y["out"]
        if y.shape[-2:] != xp.shape[-2:]:   # architecture-dependent (1/8 output of LR-ASPP), not size-dependent
            y = F.interpolate(y, size=xp.shape[-2:], mode="bilinear", align_corners=False)
        y = y[..., :h, :w]
        if self.offset is not None:
            y = torch.cat([torch.full_like(y, self.offset), y], 1)
        return y


def trace_input(info) -> torch.Tensor:
    """The example input every tracer (ONNX, TorchScript) records with: an odd size on purpose, so the
    traced pad amounts are non-trivial expressions of the input shape."""
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
            torch.onnx.export(wrapper, (trace_input(info),), str(tmp), dynamo=False, opset_version=opset,
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
