"""Small building blocks shared by the architectures pixelseg writes itself (FCN, SegNet, U-Net,
PSPNet, Fast-SCNN, BiSeNetV2): torch has no conv-norm-act block or pyramid pooling module of its own."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelseg.errors import PixelsegError


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1,
                 relu: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation=dilation,
                                             groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def norm_for_pooled(channels: int) -> nn.Module:
    """BatchNorm over a 1x1 pooled map is undefined at batch size 1 in train mode (one value per channel),
    which would break the batch-1 contract; GroupNorm normalizes that branch the same way at any batch size."""
    return nn.GroupNorm(32 if channels % 64 == 0 else 1, channels)  # at least 2 channels a group


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module (Zhao et al. 2017): average-pool to bins x bins, 1x1 conv, upsample,
    concatenate with the input. Fast-SCNN reuses it with smaller widths."""

    def __init__(self, cin: int, branch: int, bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.bins = bins
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool2dExportable(b), nn.Conv2d(cin, branch, 1, bias=False),
                          norm_for_pooled(branch) if b == 1 else nn.BatchNorm2d(branch), nn.ReLU(inplace=True))
            for b in bins)
        self.out_channels = cin + branch * len(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return torch.cat([x] + [F.interpolate(s(x), size=size, mode="bilinear", align_corners=False)
                                for s in self.stages], dim=1)


def bilinear_kernel(channels: int, kernel: int) -> torch.Tensor:
    """FCN's initialisation of learned upsampling: a transposed conv that starts as bilinear interpolation."""
    factor = (kernel + 1) // 2
    center = factor - 1 if kernel % 2 == 1 else factor - 0.5
    og = torch.arange(kernel, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    w = torch.zeros(channels, channels, kernel, kernel)
    w[range(channels), range(channels)] = filt
    return w


def check_fixed_encoder(model: str, encoder: str | None, allowed: tuple[str, ...]) -> str:
    """For architectures defined with one backbone: the default, or one of a few faithful variants."""
    if encoder is None:
        return allowed[0]
    if encoder not in allowed:
        options = " or ".join(allowed)
        raise PixelsegError(f"{model} is defined with the {options} encoder, not '{encoder}'; drop --encoder "
                            f"(default {allowed[0]}) or pick a model that takes any encoder (unet, fpn, pspnet, ...)")
    return encoder


def replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """The same conv for another input channel count, RGB filters adapted (timm's rule)."""
    from pixelseg.models.base import adapt_first_conv
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(adapt_first_conv(conv.weight, in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


class AdaptiveAvgPool2dExportable(nn.Module):
    """nn.AdaptiveAvgPool2d(bins) that exports to ONNX with dynamic H/W.

    ONNX has no adaptive pooling (the exporters give up unless the input size is fixed), so the bins are
    written as averaging matrices built from the runtime size: bin i covers rows floor(i*H/b) to
    ceil((i+1)*H/b), exactly PyTorch's rule, and pooled = A_h @ x @ A_w^T. The same numbers as
    AdaptiveAvgPool2d (checked in tests), from matmuls every backend runs.
    """

    def __init__(self, bins: int):
        super().__init__()
        self.bins = bins

    @staticmethod
    def _matrix(n: torch.Tensor | int, bins: int, like: torch.Tensor) -> torch.Tensor:
        i = torch.arange(bins, device=like.device).unsqueeze(1)
        j = torch.arange(n, device=like.device).unsqueeze(0)
        start = torch.div(i * n, bins, rounding_mode="floor")
        end = torch.div((i + 1) * n + bins - 1, bins, rounding_mode="floor")
        m = ((j >= start) & (j < end)).to(like.dtype)
        return m / m.sum(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bins == 1:
            return x.mean(dim=(2, 3), keepdim=True)
        a_h = self._matrix(x.shape[-2], self.bins, x)
        a_w = self._matrix(x.shape[-1], self.bins, x)
        return a_h @ x @ a_w.transpose(0, 1)


def make_pooling_exportable(net: nn.Module) -> nn.Module:
    """Swap every nn.AdaptiveAvgPool2d with square integer bins for the exportable equivalent."""
    for name, child in net.named_children():
        size = getattr(child, "output_size", None)
        if isinstance(child, nn.AdaptiveAvgPool2d):
            size = size if isinstance(size, int) else (size[0] if size[0] == size[1] else None)
            if isinstance(size, int):
                setattr(net, name, AdaptiveAvgPool2dExportable(size))
                continue
        make_pooling_exportable(child)
    return net
