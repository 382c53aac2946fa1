"""Fast-SCNN (Poudel, Liwicki, Cipolla, "Fast-SCNN: Fast Semantic Segmentation Network", BMVC 2019),
as in the paper's Table 1: a real-time network for the CPU and the edge (1.11M parameters).

- learning to downsample: conv 3x3/2 (32), depthwise-separable convs /2 (48) and /2 (64) -> 1/8;
- global feature extractor: MobileNetV2 bottlenecks (expansion 6): 64 x3 (/2), 96 x3 (/2), 128 x3,
  then a pyramid pooling module -> 1/32;
- feature fusion: the 1/32 branch upsampled x4, a depthwise conv and 1x1 conv, added to a 1x1 conv of
  the 1/8 branch;
- classifier: two depthwise-separable convs and a 1x1 conv; logits at 1/8, upsampled bilinearly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelseg.errors import PixelsegError
from pixelseg.models.base import Segmenter
from pixelseg.models.blocks import (
    AdaptiveAvgPool2dExportable,
    ConvBNReLU,
    check_fixed_encoder,
    norm_for_pooled,
)
from pixelseg.registry import Registry


class DSConv(nn.Sequential):
    """Depthwise-separable conv: 3x3 depthwise + BN + ReLU, then 1x1 pointwise + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(ConvBNReLU(cin, cin, 3, stride, groups=cin), ConvBNReLU(cin, cout, 1))


class Bottleneck(nn.Module):
    """MobileNetV2's inverted residual: 1x1 expand, 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, t: int = 6):
        super().__init__()
        self.residual = stride == 1 and cin == cout
        self.block = nn.Sequential(ConvBNReLU(cin, cin * t, 1), ConvBNReLU(cin * t, cin * t, 3, stride, groups=cin * t),
                                   ConvBNReLU(cin * t, cout, 1, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class PPM(nn.Module):
    """Fast-SCNN's pyramid pooling: bins 1, 2, 3, 6 of C/4 channels each, then a 1x1 conv back to C."""

    def __init__(self, c: int, bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        b = c // 4
        self.stages = nn.ModuleList(nn.Sequential(AdaptiveAvgPool2dExportable(n), nn.Conv2d(c, b, 1, bias=False),
                                                  norm_for_pooled(b) if n == 1 else nn.BatchNorm2d(b),
                                                  nn.ReLU(inplace=True)) for n in bins)
        self.out = ConvBNReLU(c + b * len(bins), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return self.out(torch.cat([x] + [F.interpolate(s(x), size, mode="bilinear", align_corners=False)
                                         for s in self.stages], 1))


class FastSCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.downsample = nn.Sequential(ConvBNReLU(in_channels, 32, 3, 2), DSConv(32, 48, 2), DSConv(48, 64, 2))
        blocks = []
        for cin, cout, stride in [(64, 64, 2), (64, 96, 2), (96, 128, 1)]:
            blocks += [Bottleneck(cin, cout, stride), Bottleneck(cout, cout, 1), Bottleneck(cout, cout, 1)]
        self.global_features = nn.Sequential(*blocks, PPM(128))
        self.low_dw = ConvBNReLU(128, 128, 3, groups=128)
        self.low_pw = nn.Sequential(nn.Conv2d(128, 128, 1, bias=False), nn.BatchNorm2d(128))
        self.high_pw = nn.Sequential(nn.Conv2d(64, 128, 1, bias=False), nn.BatchNorm2d(128))
        self.classifier = nn.Sequential(DSConv(128, 128), DSConv(128, 128), nn.Dropout(0.1),
                                        nn.Conv2d(128, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high = self.downsample(x)                                   # 1/8
        low = self.global_features(high)                            # 1/32
        low = F.interpolate(low, size=high.shape[-2:], mode="bilinear", align_corners=False)
        fused = F.relu(self.high_pw(high) + self.low_pw(self.low_dw(low)))
        return self.classifier(fused)                               # logits at 1/8


def register(models: Registry) -> None:
    @models.register("fast_scnn", family="real-time", default_encoder="fast_scnn", onnx=True, pretrained=False, lr=5e-3,
                     use="real-time on CPU/edge; fewest FLOPs here, coarse small objects")
    def fast_scnn(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        check_fixed_encoder("fast_scnn", encoder, ("fast_scnn",))
        if encoder_weights:
            raise PixelsegError("fast_scnn is trained from scratch (the paper has no ImageNet encoder); "
                                "drop --encoder-weights, or fine-tune a trained run with --init-from")
        return Segmenter(FastSCNN(num_classes, in_channels), divisor=32)
