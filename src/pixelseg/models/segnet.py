"""SegNet (Badrinarayanan, Kendall, Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder Architecture
for Image Segmentation", TPAMI 2017): the 13 convolutions of VGG16 (with BatchNorm) as the encoder, a
mirrored decoder, and the defining idea: the decoder upsamples with the max-pooling INDICES stored by the
matching encoder stage (nn.MaxUnpool2d), so boundaries come back without learning upsampling weights and
without storing the encoder feature maps. 29.5M parameters in the paper.
"""
from __future__ import annotations

import torch
from torch import nn

from pixelseg.models.base import Segmenter, load_encoder_weights
from pixelseg.models.blocks import ConvBNReLU, check_fixed_encoder, replace_first_conv
from pixelseg.registry import Registry

# VGG16's conv widths per stage; the decoder mirrors them
_STAGES = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


class MaxUnpool2x(nn.Module):
    """nn.MaxUnpool2d(2, 2) as one scatter: each value goes back to the position its max-pooling index
    recorded, zeros elsewhere. The same result as MaxUnpool2d (checked in tests), but traceable with
    dynamic H/W: torch's version checks the output size in Python, which the ONNX exporter cannot follow."""

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        out = x.new_zeros(n, c, h * 2 * w * 2)
        out = out.scatter(2, indices.flatten(2), x.flatten(2))
        return out.view(n, c, h * 2, w * 2)


class SegNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, vgg: nn.Sequential | None = None):
        super().__init__()
        enc, cin = [], in_channels
        for widths in _STAGES:
            layers = []
            for w in widths:
                layers.append(ConvBNReLU(cin, w))
                cin = w
            enc.append(nn.Sequential(*layers))
        self.encoder = nn.ModuleList(enc)
        if vgg is not None:
            self._load_vgg(vgg, in_channels)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = MaxUnpool2x()
        dec = []
        for i, widths in reversed(list(enumerate(_STAGES))):
            # mirrored: the stage's convs keep its width, the last one narrows to the next stage's input width
            outs = widths[:-1] + [_STAGES[i - 1][-1] if i > 0 else widths[-1]]
            layers, c = [], widths[-1]
            for o in outs:
                layers.append(ConvBNReLU(c, o))
                c = o
            dec.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(dec)
        self.classifier = nn.Conv2d(_STAGES[0][0], num_classes, 3, padding=1)

    def _load_vgg(self, vgg: nn.Sequential, in_channels: int) -> None:
        """Copy torchvision's VGG16-BN convolutions and norms, in order, into the encoder."""
        convs = [m for m in vgg if isinstance(m, nn.Conv2d)]
        norms = [m for m in vgg if isinstance(m, nn.BatchNorm2d)]
        mine = [b for stage in self.encoder for b in stage]
        for block, conv, bn in zip(mine, convs, norms):
            if conv.in_channels != block[0].in_channels:
                conv = replace_first_conv(conv, in_channels)
            block[0].weight.data.copy_(conv.weight.data)
            block[1].load_state_dict(bn.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the Segmenter pads to a multiple of 32, so every pooling halves exactly and unpooling doubles back
        indices = []
        for stage in self.encoder:
            x, idx = self.pool(stage(x))
            indices.append(idx)
        for stage, idx in zip(self.decoder, reversed(indices)):
            x = stage(self.unpool(x, idx))
        return self.classifier(x)


def register(models: Registry) -> None:
    @models.register("segnet", family="SegNet", default_encoder="vgg16_bn", onnx=True, lr=1e-3,
                     use="the classic encoder-decoder with pooling indices; memory-light decoder, sharp edges")
    def segnet(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        check_fixed_encoder("segnet", encoder, ("vgg16_bn",))
        vgg = None
        if encoder_weights == "imagenet":
            from torchvision.models import VGG16_BN_Weights, vgg16_bn

            from pixelseg.errors import PixelsegError
            try:
                vgg = vgg16_bn(weights=VGG16_BN_Weights.IMAGENET1K_V1).features
            except (OSError, RuntimeError) as e:
                raise PixelsegError(f"could not fetch ImageNet weights for vgg16_bn ({str(e).splitlines()[0][:160]}); "
                                    "without network access pass a local file with --encoder-weights PATH") from None
        net = SegNet(num_classes, in_channels, vgg)
        report = None
        if encoder_weights and encoder_weights != "imagenet":
            report = load_encoder_weights(net.encoder, encoder_weights)
        model = Segmenter(net, divisor=32)
        model.encoder_report = report
        return model
