"""What every registered model is wrapped in, and how encoder weights are loaded.

The contract: input N x C x H x W with any C and any H, W; output logits N x K x H x W at input size.
Networks that need H, W divisible by some stride declare it (`divisor`); the wrapper pads with zeros
(the normalized mean) and crops back, so the user never sees "must be divisible by 32".
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixelseg.errors import PixelsegError

IMAGENET_MEAN = (123.675, 116.28, 103.53)   # on the 0..255 scale
IMAGENET_STD = (58.395, 57.12, 57.375)


def default_mean_std(in_channels: int) -> tuple[list[float], list[float]]:
    """ImageNet statistics for RGB(+alpha); their average for other channel counts."""
    if in_channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if in_channels == 4:
        return list(IMAGENET_MEAN) + [127.5], list(IMAGENET_STD) + [127.5]
    m, s = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
    return [m] * in_channels, [s] * in_channels


class Segmenter(nn.Module):
    """Pads the input to a multiple of `divisor`, runs `net`, resizes its logits to the padded size when
    the net predicts at a lower resolution, and crops back to the input size."""

    def __init__(self, net: nn.Module, divisor: int = 32):
        super().__init__()
        self.net, self.divisor = net, divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.divisor, (-w) % self.divisor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        y = self.net(x)
        if isinstance(y, dict):          # torchvision segmentation models return {"out": ...}
            y = y["out"]
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y[..., :h, :w]


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Reuse RGB filters for another channel count (timm's rule: sum for gray, repeat and rescale otherwise)."""
    from timm.models import adapt_input_conv
    return adapt_input_conv(in_channels, weight)


_PREFIXES = ("module.", "model.", "encoder.", "backbone.", "features.", "state_dict.")


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> dict:
    """Load a local weights file (.safetensors, or a .pth/.pt read with weights_only=True) into `encoder`.

    Keys are matched after stripping common wrapper prefixes; tensors of the wrong shape are skipped,
    except the first convolution, which is adapted to the model's input channels. Returns a report of
    what was loaded, so the caller can tell the user.
    """
    path = Path(path)
    if not path.is_file():
        raise PixelsegError(f"{path}: encoder weights file not found; pass a .safetensors or .pth file to --encoder-weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
    except Exception as e:  # any decode failure of a user file is a user error
        raise PixelsegError(f"{path}: cannot read weights ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                            "give a .safetensors file or a plain state_dict .pth") from None
    if not isinstance(state, dict):
        raise PixelsegError(f"{path}: does not hold a state_dict; save model.state_dict() (safetensors preferred)")
    target = encoder.state_dict()

    def strip(k: str) -> str:
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p) and k not in target:
                    k, changed = k[len(p):], True
        return k

    new, adapted, skipped = {}, [], []
    first_conv = next((k for k, v in target.items() if v.ndim == 4), None)
    for k, v in state.items():
        k2 = strip(k)
        if k2 not in target:
            continue
        if v.shape == target[k2].shape:
            new[k2] = v
        elif k2 == first_conv and v.ndim == 4 and v.shape[0] == target[k2].shape[0]:
            new[k2] = adapt_first_conv(v.float(), target[k2].shape[1]).to(target[k2].dtype)
            adapted.append(k2)
        else:
            skipped.append(k2)
    if not new:
        raise PixelsegError(f"{path}: no tensor matches the encoder ({type(encoder).__name__}); "
                            "is it for the encoder you chose with --encoder?")
    encoder.load_state_dict(new, strict=False)
    missing = [k for k in target if k not in new]
    return {"loaded": len(new), "total": len(target), "adapted": adapted, "shape_mismatch": skipped,
            "missing": missing}
