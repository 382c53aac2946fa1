"""PSPNet (Zhao, Shi, Qi, Wang, Jia, "Pyramid Scene Parsing Network", CVPR 2017): a dilated ResNet
(output stride 8: the last two stages trade stride for atrous convolution), the pyramid pooling module
(average pooling to 1x1, 2x2, 3x3 and 6x6 bins, 1x1 conv to 1/4 of the channels each, upsampled and
concatenated), a 3x3 conv and the classifier; plus the paper's auxiliary head on the stage-3 features
(deep supervision, loss weight 0.4), used in training only.

Any timm encoder that supports `output_stride` (the ResNet/ResNeXt/RegNet/ConvNeXt families) works.
smp ships a PSPNet too, but it truncates the encoder at stride 8 instead of dilating it, which is not
the paper's network; this one is.
"""
from __future__ import annotations

import torch
from torch import nn

from pixelseg.models.base import (
    Segmenter,
    encoder_mean_std,
    load_encoder_weights,
    timm_features,
)
from pixelseg.models.blocks import ConvBNReLU, PyramidPooling
from pixelseg.registry import Registry


class PSPNet(nn.Module):
    aux_heads = 1

    def __init__(self, num_classes: int, in_channels: int, encoder: str, encoder_weights: str | None,
                 bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.encoder = timm_features(encoder, in_channels, encoder_weights, out_indices=(3, 4), output_stride=8,
                                     what="pspnet")
        c3, c4 = self.encoder.feature_info.channels()
        self.ppm = PyramidPooling(c4, c4 // len(bins), bins)
        self.head = nn.Sequential(ConvBNReLU(self.ppm.out_channels, 512), nn.Dropout2d(0.1),
                                  nn.Conv2d(512, num_classes, 1))
        self.aux = nn.Sequential(ConvBNReLU(c3, 256), nn.Dropout2d(0.1), nn.Conv2d(256, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.ppm(self.encoder(x)[1]))

    def forward_aux(self, x: torch.Tensor):
        f3, f4 = self.encoder(x)
        return self.head(self.ppm(f4)), [self.aux(f3)]


def register(models: Registry) -> None:
    @models.register("pspnet", family="PSPNet", default_encoder="resnet50", onnx=True, aux_heads=1, aux_weight=0.4,
                     use="scene parsing where global context decides the class (indoor/outdoor scenes, driving)")
    def pspnet(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        net = PSPNet(num_classes, in_channels, encoder or "resnet50", encoder_weights)
        report = None
        if encoder_weights and encoder_weights != "imagenet":
            report = load_encoder_weights(net.encoder, encoder_weights)
        model = Segmenter(net, divisor=8)
        model.encoder_report = report
        model.mean_std = encoder_mean_std(net.encoder, in_channels)
        return model
