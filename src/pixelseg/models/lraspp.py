"""LR-ASPP on MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", 2019), built from
torchvision's parts: real-time models for the CPU and the edge.

- `lraspp`: the paper's model (torchvision's lraspp_mobilenet_v3_large): the low-level branch taps the
  backbone at 1/8, so the logits come out at 1/8 of the input.
- `lraspp-s4`: pixelseg's variant, the same network with the low-level branch tapped at 1/4 (the
  24-channel C1 stage). The extra cost is a 1x1 conv on a 24-channel map; the logits come out at 1/4,
  which keeps thin parts of objects (points of a star, arms of a cross) that 1/8 blurs away.
"""
from __future__ import annotations

import torch
from torch import nn

from pixelseg.errors import PixelsegError
from pixelseg.models.base import Segmenter, adapt_first_conv, load_encoder_weights
from pixelseg.registry import Registry


def _build(num_classes: int, in_channels: int, encoder, encoder_weights, low_stride: int, name: str) -> Segmenter:
    from torchvision.models import MobileNet_V3_Large_Weights, mobilenet_v3_large
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.lraspp import LRASPP

    if encoder not in (None, "mobilenet_v3_large"):
        raise PixelsegError(f"{name} has a fixed encoder (mobilenet_v3_large), not '{encoder}'; drop --encoder")
    hub = MobileNet_V3_Large_Weights.IMAGENET1K_V1 if encoder_weights == "imagenet" else None
    try:
        backbone = mobilenet_v3_large(weights=hub, dilated=True).features
    except (OSError, RuntimeError) as e:
        raise PixelsegError(f"could not fetch ImageNet weights for mobilenet_v3_large ({str(e).splitlines()[0][:160]}); "
                            "without network access pass a local file with --encoder-weights PATH") from None
    # As in torchvision: the strided blocks start the stages C1..C4; C0 is the stem, the last block is C5.
    stages = [0] + [i for i, b in enumerate(backbone) if getattr(b, "_is_cn", False)] + [len(backbone) - 1]
    low_pos = stages[-4] if low_stride == 8 else stages[-5]
    high_pos = stages[-1]   # output stride 16 (the last stage is dilated)
    low_ch, high_ch = backbone[low_pos].out_channels, backbone[high_pos].out_channels
    if in_channels != 3:
        old: nn.Conv2d = backbone[0][0]
        conv = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        with torch.no_grad():
            conv.weight.copy_(adapt_first_conv(old.weight, in_channels))
        backbone[0][0] = conv
    report = None
    if encoder_weights and encoder_weights != "imagenet":
        report = load_encoder_weights(backbone, encoder_weights)
    getter = IntermediateLayerGetter(backbone, return_layers={str(low_pos): "low", str(high_pos): "high"})
    net = LRASPP(getter, low_ch, high_ch, num_classes)
    # torchvision builds MobileNetV3 with BatchNorm momentum 0.01, tuned for 600 ImageNet epochs: in a
    # run of minutes the running statistics lag the weights and eval-mode accuracy collapses (measured:
    # val mIoU 0.37 vs 0.58 after 400 steps on the built-in data). 0.1 is PyTorch's default.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    model = Segmenter(net, divisor=32)
    model.encoder_report = report
    return model


def register(models: Registry) -> None:
    @models.register("lraspp", family="real-time", default_encoder="mobilenet_v3_large", lr=1e-2,
                     min_input=160,  # 1/8-resolution output: 128 px inputs measured 0.888 vs 0.900 mIoU at 160
                     use="fast CPU/edge inference; coarse boundaries (1/8 output)")
    def lraspp(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        return _build(num_classes, in_channels, encoder, encoder_weights, 8, "lraspp")

    @models.register("lraspp-s4", family="real-time", default_encoder="mobilenet_v3_large", lr=1e-2,
                     use="fast CPU/edge inference; LR-ASPP with a 1/4 low-level branch for finer boundaries")
    def lraspp_s4(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        return _build(num_classes, in_channels, encoder, encoder_weights, 4, "lraspp-s4")
