"""The original U-Net (Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015): four 2x2 max-pool downsamplings of double 3x3 convolutions (64 -> 1024
channels), 2x2 up-convolutions halving the channels, skip connections by CONCATENATION, a final 1x1
conv: 23 convolutional layers. For U-Net over any timm/smp encoder use `unet`.

Differences from the paper, both the common modern practice: convolutions are padded ("same"), so the
output covers the whole input instead of a smaller centre crop, and BatchNorm follows each 3x3 conv
(`batch_norm=False` gives the paper's plain convs; training those from scratch needs the paper's
careful init and many epochs).
"""
from __future__ import annotations

import torch
from torch import nn

from pixelseg.models.base import Segmenter
from pixelseg.models.blocks import check_fixed_encoder
from pixelseg.registry import Registry


def _double_conv(cin: int, cout: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers += [nn.Conv2d(c, cout, 3, padding=1, bias=not bn)]
        layers += [nn.BatchNorm2d(cout)] if bn else []
        layers += [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNetPlain(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, base: int = 64, batch_norm: bool = True):
        super().__init__()
        widths = [base * 2 ** i for i in range(5)]      # 64, 128, 256, 512, 1024
        self.down = nn.ModuleList([_double_conv(in_channels, widths[0], batch_norm)] +
                                  [_double_conv(widths[i - 1], widths[i], batch_norm) for i in range(1, 5)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2) for i in range(4, 0, -1))
        self.dec = nn.ModuleList(_double_conv(widths[i], widths[i - 1], batch_norm) for i in range(4, 0, -1))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))   # concatenation skip (not summation as in FCN)
        return self.head(x)


def register(models: Registry) -> None:
    @models.register("unet_plain", family="U-Net", default_encoder="plain", onnx=True, pretrained=False,
                     use="the original U-Net; small data from scratch, any channel count (microscopy, medical)")
    def unet_plain(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        check_fixed_encoder("unet_plain", encoder, ("plain",))
        from pixelseg.errors import PixelsegError
        if encoder_weights:
            raise PixelsegError("unet_plain has no pretrained encoder; drop --encoder-weights (or use --model unet "
                                "with --encoder and --encoder-weights)")
        return Segmenter(UNetPlain(num_classes, in_channels), divisor=16)
