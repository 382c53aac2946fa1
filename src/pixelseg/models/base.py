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


def encoder_of(model: nn.Module) -> nn.Module | None:
    """The pretrained-able encoder of an encoder-decoder model (smp models keep it as `net.encoder`), else None."""
    return getattr(getattr(model, "net", model), "encoder", None)


class Segmenter(nn.Module):
    """Pads the input to a multiple of `divisor`, runs `net`, resizes its logits to the padded size when
    the net predicts at a lower resolution, and crops back to the input size.

    Auxiliary heads (deep supervision) follow one contract: `model(x, with_aux=True)` (or
    `model.forward_aux(x)`) returns `(logits, [aux_logits, ...])`, every map N x K x H x W at input size,
    in train and eval mode alike. A net that defines aux heads implements `forward_aux(x) -> (y, [aux])`
    and lists them in `aux_heads`; the plain `model(x)` never computes them, so inference and export pay
    nothing. Going through `forward` (not a second method) keeps DDP's gradient hooks working.
    """

    def __init__(self, net: nn.Module, divisor: int = 32):
        super().__init__()
        self.net, self.divisor = net, divisor

    @property
    def aux_heads(self) -> int:
        """How many auxiliary logit maps `forward_aux` returns (0: none defined by the architecture)."""
        return int(getattr(self.net, "aux_heads", 0))

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.divisor, (-w) % self.divisor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        aux: list[torch.Tensor] = []
        if with_aux and hasattr(self.net, "forward_aux"):
            y, aux = self.net.forward_aux(x)
        else:
            y = self.net(x)
        if isinstance(y, dict):          # torchvision segmentation models return {"out": ...}
            y = y["out"]
        y = self._to_input_size(y, x.shape[-2:], h, w)
        if not with_aux:
            return y
        return y, [self._to_input_size(a, x.shape[-2:], h, w) for a in aux]

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self(x, with_aux=True)

    @staticmethod
    def _to_input_size(y: torch.Tensor, padded: torch.Size, h: int, w: int) -> torch.Tensor:
        if y.shape[-2:] != padded:
            y = F.interpolate(y, size=padded, mode="bilinear", align_corners=False)
        return y[..., :h, :w]


def timm_name(encoder: str) -> str:
    """Accept smp's spelling for timm encoders ("tu-resnet50") as well as the bare timm name."""
    return encoder.removeprefix("tu-")


def timm_features(encoder: str, in_channels: int, encoder_weights: str | None, out_indices: tuple[int, ...],
                  output_stride: int = 32, what: str = "model") -> nn.Module:
    """A timm backbone returning feature maps (features_only), for the models pixelseg builds itself.

    `output_stride` 8 or 16 replaces the last strides by dilation (atrous convolution), as PSPNet does.
    ImageNet weights come from the hub ('imagenet'); a local file is loaded by the caller.
    """
    import timm

    name = timm_name(encoder)
    if not timm.is_model(name):
        close = timm.list_models(f"*{name[:4]}*")[:5] if len(name) >= 4 else []
        raise PixelsegError(f"unknown encoder '{encoder}' for {what}; give a timm model name (e.g. resnet18, "
                            f"resnet50, mobilenetv3_large_100){'; close: ' + ', '.join(close) if close else ''}")
    kw = {"output_stride": output_stride} if output_stride != 32 else {}
    try:
        return timm.create_model(name, pretrained=encoder_weights == "imagenet", features_only=True,
                                 in_chans=in_channels, out_indices=out_indices, **kw)
    except (OSError, RuntimeError) as e:
        if encoder_weights == "imagenet":
            raise PixelsegError(f"could not fetch ImageNet weights for encoder '{encoder}' ({str(e).splitlines()[0][:160]}); "
                                "without network access pass a local file with --encoder-weights PATH") from None
        raise PixelsegError(f"cannot build {what} with encoder '{encoder}': {str(e).splitlines()[0][:200]}") from None
    except (TypeError, ValueError, AssertionError) as e:  # e.g. an encoder without dilation support
        raise PixelsegError(f"encoder '{encoder}' cannot serve {what} ({str(e).splitlines()[0][:160]}); "
                            "try a ResNet-family timm encoder such as resnet50") from None


def encoder_mean_std(encoder: nn.Module, in_channels: int) -> tuple[list[float], list[float]] | None:
    """The normalization a timm encoder was pretrained with (0..255 scale), if it declares one."""
    cfg = getattr(encoder, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if not mean or not std or len(mean) != 3:
        return None
    if in_channels != 3:
        # a stem inflated from RGB filters (adapt_first_conv) expects every channel as the RGB ones were
        # normalized; that is one value only when the weights use the same statistics for R, G and B (Lite: 0.5)
        if len(set(mean)) != 1 or len(set(std)) != 1:
            return None
        mean, std = [mean[0]] * in_channels, [std[0]] * in_channels
    return [m * 255 for m in mean], [s * 255 for s in std]


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Inflate RGB filters to another channel count, keeping what they learned. The first three bands keep the
    R, G, B filters, every further band gets their mean, and all are rescaled by 3/C, so an image whose bands
    are all equal (a gray scan, a flat extra band) gives the RGB network's response on that gray image. One
    or two channels get the mean filter (x 3/C: the sum for one). By hand rather than timm's adapt_input_conv,
    which repeats R, G, B cyclically: it would read a 4th band (near-infrared, depth) as if it were red."""
    if weight.shape[1] != 3 or in_channels == 3:
        from timm.models import adapt_input_conv
        return adapt_input_conv(in_channels, weight)
    mean = weight.mean(dim=1, keepdim=True)
    if in_channels < 3:
        bands = mean.repeat(1, in_channels, 1, 1)
    else:
        bands = torch.cat([weight, mean.repeat(1, in_channels - 3, 1, 1)], dim=1)
    return bands * (3 / in_channels)


_PREFIXES = ("module.", "model.", "encoder.", "backbone.", "features.", "state_dict.")


def strip_prefixes(key: str, prefixes: tuple[str, ...], target) -> str:
    """Drop wrapper prefixes (DDP's `module.`, a checkpoint's `model.`, ...) until `key` names a tensor of
    `target`, or no prefix is left to drop."""
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if key.startswith(p) and key not in target:
                key, changed = key[len(p):], True
    return key


def read_weights_file(path: Path):
    """What a user's weights file holds: safetensors, or a .pth/.pt read with weights_only=True (never a
    pickle that could run code). Any decode failure is the user's file, so it is a one-line PixelsegError."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decode failure of a user file is a user error
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise PixelsegError(f"{path}: cannot read weights ({type(e).__name__}: {first}); "
                            "give a .safetensors file or a plain state_dict .pth") from None


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> dict:
    """Load a local weights file (.safetensors, or a .pth/.pt read with weights_only=True) into `encoder`.

    Keys are matched after stripping common wrapper prefixes; tensors of the wrong shape are skipped,
    except the first convolution, which is adapted to the model's input channels. Returns a report of
    what was loaded, so the caller can tell the user.
    """
    path = Path(path)
    if not path.is_file():
        raise PixelsegError(f"{path}: encoder weights file not found; pass a .safetensors or .pth file to --encoder-weights")
    state = read_weights_file(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PixelsegError(f"{path}: does not hold a state_dict; save model.state_dict() (safetensors preferred)")
    target = encoder.state_dict()
    new, adapted, skipped = {}, [], []
    first_conv = next((k for k, v in target.items() if v.ndim == 4), None)
    for k, v in state.items():
        k2 = strip_prefixes(k, _PREFIXES, target)
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
    weights = [k for k in target if not k.endswith("num_batches_tracked")]     # BatchNorm's step counters are not
    missing = [k for k in weights if k not in new]
    return {"loaded": sum(k in new for k in weights), "total": len(weights), "adapted": adapted, "shape_mismatch": skipped,
            "missing": missing}
