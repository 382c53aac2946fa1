"""What a model costs before it is trained: parameters and multiply-accumulates at a given input size.

GFLOPs here are giga multiply-accumulates (torch.utils.flop_counter's count / 2), the convention of the
papers and of fvcore/mmcv tables, so the numbers compare directly with published ones.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from pixelseg.models import build_model, count_parameters


def gflops(model: torch.nn.Module, in_channels: int = 3, size: tuple[int, int] = (512, 512)) -> float:
    """Multiply-accumulates of one eval forward at `size`, counted on the meta device (no real compute)."""
    model = model.to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, in_channels, *size, device="meta"))
    return counter.get_total_flops() / 2e9


def profile(name: str, num_classes: int = 21, in_channels: int = 3, size: tuple[int, int] = (512, 512),
            encoder: str | None = None) -> dict:
    """{"params": int, "gflops": float} without materialising weights when the builder allows it."""
    try:
        with torch.device("meta"):  # no memory, no init: even FCN's 134M parameters cost nothing
            model = build_model(name, num_classes, in_channels, encoder)
    except Exception:  # noqa: BLE001 - any failure of a meta build falls back to a real one (whose errors show)
        # some third-party builders read tensor values while building (smp's Segformer, DeepLab's
        # ASPP): build those for real, then count on the meta device
        model = build_model(name, num_classes, in_channels, encoder)
    return {"params": count_parameters(model), "gflops": gflops(model, in_channels, size)}
