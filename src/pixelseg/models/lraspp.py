"""LR-ASPP on MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", 2019), from torchvision:
a real-time model for the CPU and the edge."""
from __future__ import annotations

import torch
from torch import nn

from pixelseg.errors import PixelsegError
from pixelseg.models.base import Segmenter, adapt_first_conv, load_encoder_weights
from pixelseg.registry import Registry


def register(models: Registry) -> None:
    @models.register("lraspp", family="real-time", default_encoder="mobilenet_v3_large", lr=1e-2,
                     min_input=160,  # 1/8-resolution output: 128 px inputs measured 0.888 vs 0.900 mIoU at 160
                     use="fast CPU/edge inference; coarse boundaries")
    def lraspp(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        from torchvision.models import MobileNet_V3_Large_Weights
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large

        if encoder not in (None, "mobilenet_v3_large"):
            raise PixelsegError(f"lraspp has a fixed encoder (mobilenet_v3_large), not '{encoder}'; drop --encoder")
        hub = MobileNet_V3_Large_Weights.IMAGENET1K_V1 if encoder_weights == "imagenet" else None
        try:
            net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=hub, num_classes=num_classes)
        except (OSError, RuntimeError) as e:
            raise PixelsegError(f"could not fetch ImageNet weights for mobilenet_v3_large ({str(e).splitlines()[0][:160]}); "
                                "without network access pass a local file with --encoder-weights PATH") from None
        if in_channels != 3:
            old: nn.Conv2d = net.backbone["0"][0]
            conv = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
            with torch.no_grad():
                conv.weight.copy_(adapt_first_conv(old.weight, in_channels))
            net.backbone["0"][0] = conv
        # torchvision builds MobileNetV3 with BatchNorm momentum 0.01, tuned for 600 ImageNet epochs: in a
        # run of minutes the running statistics lag the weights and eval-mode accuracy collapses (measured:
        # val mIoU 0.37 vs 0.58 after 400 steps on the built-in data). 0.1 is PyTorch's default.
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        report = None
        if encoder_weights and encoder_weights != "imagenet":
            report = load_encoder_weights(net.backbone, encoder_weights)
        model = Segmenter(net, divisor=32)
        model.encoder_report = report
        return model
