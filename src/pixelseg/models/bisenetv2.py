"""BiSeNet V2 (Yu, Gao, Gong, Shen, Sang, "BiSeNet V2: Bilateral Network with Guided Aggregation for
Real-time Semantic Segmentation", IJCV 2021), following the paper's Table 1 and the widely used
reference implementation (CoinCheung/BiSeNet):

- detail branch: wide and shallow, 64-64-128 channels, to 1/8 (spatial detail);
- semantic branch: stem block (1/4), gather-and-expansion layers (1/8, 1/16, 1/32), context embedding
  (global average pooling) - narrow and deep (16-32-64-128);
- bilateral guided aggregation: each branch gates the other through a sigmoid, at both resolutions;
- segmentation head 3x3 conv (1024) + 1x1 conv at 1/8;
- the paper's "booster" training: four auxiliary heads on the semantic branch (1/4, 1/8, 1/16, 1/32),
  each weighted 1.0, training only (`forward_aux`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelseg.errors import PixelsegError
from pixelseg.models.base import Segmenter
from pixelseg.models.blocks import ConvBNReLU, check_fixed_encoder, norm_for_pooled
from pixelseg.registry import Registry


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


class StemBlock(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, 16, 3, 2)
        self.left = nn.Sequential(ConvBNReLU(16, 8, 1), ConvBNReLU(8, 16, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNReLU(32, 16, 3)

    def forward(self, x):
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], 1))


class ContextEmbedding(nn.Module):
    def __init__(self, c: int = 128):
        super().__init__()
        # the pooled map is 1x1: GroupNorm instead of the paper's BatchNorm keeps batch size 1 trainable
        self.norm = norm_for_pooled(c)
        self.gap_conv = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), norm_for_pooled(c), nn.ReLU(inplace=True))
        self.last = ConvBNReLU(c, c, 3)

    def forward(self, x):
        g = self.gap_conv(self.norm(x.mean(dim=(2, 3), keepdim=True)))
        return self.last(x + g)


class GatherExpand(nn.Module):
    """Gather-and-expansion layer; stride 2 adds a second depthwise conv and a depthwise-separable shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 6):
        super().__init__()
        mid = cin * expand
        self.conv1 = ConvBNReLU(cin, cin, 3)
        if stride == 1:
            self.dw = nn.Sequential(_conv_bn(cin, mid, 3, 1, groups=cin), nn.ReLU(inplace=True))
            self.shortcut = None
        else:
            self.dw = nn.Sequential(_conv_bn(cin, mid, 3, 2, groups=cin), _conv_bn(mid, mid, 3, 1, groups=mid),
                                    nn.ReLU(inplace=True))
            self.shortcut = nn.Sequential(_conv_bn(cin, cin, 3, 2, groups=cin), _conv_bn(cin, cout, 1))
        self.conv2 = _conv_bn(mid, cout, 1)

    def forward(self, x):
        y = self.conv2(self.dw(self.conv1(x)))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class GuidedAggregation(nn.Module):
    def __init__(self, c: int = 128):
        super().__init__()
        self.detail_keep = nn.Sequential(_conv_bn(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.detail_down = nn.Sequential(_conv_bn(c, c, 3, 2), nn.AvgPool2d(3, 2, 1, ceil_mode=False))
        self.semantic_up = _conv_bn(c, c, 3)
        self.semantic_keep = nn.Sequential(_conv_bn(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.conv = ConvBNReLU(c, c, 3)

    def forward(self, detail, semantic):
        size = detail.shape[-2:]
        up = F.interpolate(self.semantic_up(semantic), size=size, mode="bilinear", align_corners=False)
        left = self.detail_keep(detail) * torch.sigmoid(up)
        right = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        right = F.interpolate(right, size=size, mode="bilinear", align_corners=False)
        return self.conv(left + right)


def _head(cin: int, mid: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(ConvBNReLU(cin, mid, 3), nn.Dropout(0.1), nn.Conv2d(mid, num_classes, 1))


class BiSeNetV2(nn.Module):
    aux_heads = 4

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.detail = nn.Sequential(
            ConvBNReLU(in_channels, 64, 3, 2), ConvBNReLU(64, 64),
            ConvBNReLU(64, 64, 3, 2), ConvBNReLU(64, 64), ConvBNReLU(64, 64),
            ConvBNReLU(64, 128, 3, 2), ConvBNReLU(128, 128), ConvBNReLU(128, 128))
        self.stem = StemBlock(in_channels)
        self.s3 = nn.Sequential(GatherExpand(16, 32, 2), GatherExpand(32, 32, 1))
        self.s4 = nn.Sequential(GatherExpand(32, 64, 2), GatherExpand(64, 64, 1))
        self.s5 = nn.Sequential(GatherExpand(64, 128, 2), GatherExpand(128, 128, 1), GatherExpand(128, 128, 1),
                                GatherExpand(128, 128, 1))
        self.ce = ContextEmbedding(128)
        self.bga = GuidedAggregation(128)
        self.head = _head(128, 1024, num_classes)
        self.aux = nn.ModuleList(_head(c, 128, num_classes) for c in (16, 32, 64, 128))

    def _features(self, x):
        f2 = self.stem(x)
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        f5 = self.s5(f4)
        return self.bga(self.detail(x), self.ce(f5)), (f2, f3, f4, f5)

    def forward(self, x):
        return self.head(self._features(x)[0])

    def forward_aux(self, x):
        fused, stages = self._features(x)
        return self.head(fused), [h(f) for h, f in zip(self.aux, stages)]


def register(models: Registry) -> None:
    @models.register("bisenetv2", family="real-time", default_encoder="bisenetv2", onnx=True, pretrained=False, lr=5e-3,
                     aux_heads=4, aux_weight=1.0, use="real-time with sharper detail than Fast-SCNN (two branches); driving, video")
    def bisenetv2(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        check_fixed_encoder("bisenetv2", encoder, ("bisenetv2",))
        if encoder_weights:
            raise PixelsegError("bisenetv2 is trained from scratch (the paper uses no ImageNet encoder); "
                                "drop --encoder-weights, or fine-tune a trained run with --init-from")
        return Segmenter(BiSeNetV2(num_classes, in_channels), divisor=32)
