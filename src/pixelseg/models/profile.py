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


def select(terms: list[str] | None = None, family: str | None = None) -> list[str]:
    """Model names matching every term (a substring of the name, family or typical use) and the family.

    Nothing matching is a user error that names the closest model names, so a typo gets an answer.
    """
    import difflib

    from pixelseg.errors import PixelsegError
    from pixelseg.models import MODELS

    def norm(s: str) -> str:  # "U-Net", "unet" and "UNet" are the same family to a user
        return "".join(c for c in s.lower() if c.isalnum() or c == " ")

    names = []
    for e in MODELS:
        text = norm(f"{e.name} {e.name.replace('_', '')} {e.info.get('family', '')} {e.info.get('use', '')}")
        if family and norm(family) != norm(e.info.get("family", "")):
            continue
        if all(norm(t) in text for t in terms or []):
            names.append(e.name)
    if not names:
        wanted = " ".join(terms or []) or family or ""
        close = difflib.get_close_matches(wanted, MODELS.names(), n=3, cutoff=0.4)
        families = sorted({e.info.get("family", "") for e in MODELS})
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise PixelsegError(f"no model matches '{wanted}'; {hint}families: {', '.join(families)}; "
                            f"models: {', '.join(MODELS.names())}")
    return sorted(names)


def model_rows(names: list[str], num_classes: int = 21, size: tuple[int, int] = (512, 512)) -> list[dict]:
    """One row per model for `pixelseg models`: what it is, what it costs, whether it exports."""
    from pixelseg.models import MODELS, onnx_support

    rows = []
    for name in names:
        info = MODELS.get(name).info
        cost = profile(name, num_classes, size=size)
        ok, why = onnx_support(name)
        rows.append({"name": name, "family": info.get("family", ""), "encoder": info.get("default_encoder", ""),
                     "params": cost["params"], "gflops": round(cost["gflops"], 2), "onnx": ok, "onnx_note": why,
                     "aux_heads": int(info.get("aux_heads", 0)),
                     "use": info.get("use", "")})
    return rows
