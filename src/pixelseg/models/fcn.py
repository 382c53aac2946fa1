"""FCN-32s / FCN-16s / FCN-8s (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015) on VGG16, as in the paper:

- VGG16's fully connected layers become convolutions: fc6 is a 7x7 conv with 4096 filters, fc7 a 1x1 conv
  with 4096 (with ImageNet weights they are the reshaped fc weights, the paper's "convolutionalization");
- a 1x1 "score" conv predicts the classes at stride 32;
- FCN-16s / FCN-8s add 1x1 score convs on pool4 / pool3, zero-initialised, and fuse them by SUMMATION
  with the 2x learned upsampling of the coarser prediction;
- learned 2x upsampling: transposed convolutions initialised to bilinear interpolation; the final
  upsampling to the input size is fixed bilinear interpolation, as in the paper.

One deliberate difference: the paper pads conv1_1 by 100 pixels and crops after each fusion (a Caffe
workaround for its unpadded fc6); here fc6 is padded "same" and the input is padded to a multiple of 32
by the Segmenter, which gives the same fusion geometry without crop offsets. Parameter count is unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from pixelseg.errors import PixelsegError
from pixelseg.models.base import Segmenter, load_encoder_weights
from pixelseg.models.blocks import (
    bilinear_kernel,
    check_fixed_encoder,
    replace_first_conv,
)
from pixelseg.registry import Registry


def _upsample(classes: int, factor: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(classes, classes, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(classes, 2 * factor))
    return up


class FCN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, stride: int, encoder: str, encoder_weights: str | None):
        super().__init__()
        if stride not in (32, 16, 8):
            raise ValueError(stride)
        import torchvision.models as tvm

        weights, vgg = None, None
        if encoder_weights == "imagenet":
            weights = {"vgg16": tvm.VGG16_Weights, "vgg16_bn": tvm.VGG16_BN_Weights}[encoder].IMAGENET1K_V1
            try:
                vgg = getattr(tvm, encoder)(weights=weights)
            except (OSError, RuntimeError) as e:
                raise PixelsegError(f"could not fetch ImageNet weights for {encoder} ({str(e).splitlines()[0][:160]}); "
                                    "without network access pass a local file with --encoder-weights PATH") from None
            feats = vgg.features
        else:  # the conv layers only: VGG's own 120M-parameter classifier would be built just to be dropped
            from torchvision.models.vgg import cfgs, make_layers
            feats = make_layers(cfgs["D"], batch_norm=encoder == "vgg16_bn")
        if in_channels != 3:
            feats[0] = replace_first_conv(feats[0], in_channels)
        pools = [i for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]
        # stages ending at pool3 (stride 8), pool4 (16), pool5 (32)
        self.to_pool3 = feats[: pools[2] + 1]
        self.to_pool4 = feats[pools[2] + 1: pools[3] + 1]
        self.to_pool5 = feats[pools[3] + 1: pools[4] + 1]
        fc6 = nn.Conv2d(512, 4096, 7, padding=3)
        fc7 = nn.Conv2d(4096, 4096, 1)
        if weights is not None:  # the paper's convolutionalization of VGG16's classifier
            with torch.no_grad():
                fc6.weight.copy_(vgg.classifier[0].weight.view(4096, 512, 7, 7))
                fc6.bias.copy_(vgg.classifier[0].bias)
                fc7.weight.copy_(vgg.classifier[3].weight.view(4096, 4096, 1, 1))
                fc7.bias.copy_(vgg.classifier[3].bias)
        # registered once, as head.0 and head.3: also keeping them as self.fc6/fc7 would put each tensor in
        # the state dict twice under two names, which safetensors refuses to save (aliased storage)
        self.head = nn.Sequential(fc6, nn.ReLU(inplace=True), nn.Dropout2d(0.5),
                                  fc7, nn.ReLU(inplace=True), nn.Dropout2d(0.5))
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        self.stride = stride
        # The final upsampling (x32, x16, x8) is fixed bilinear interpolation in the paper, so it is not a
        # layer here: the net returns the stride-s scores and the Segmenter interpolates them bilinearly.
        # The intermediate x2 upsamplings are learned (transposed convs initialised to bilinear).
        if stride != 32:
            self.score_pool4 = nn.Conv2d(512, num_classes, 1)
            self.upscore2 = _upsample(num_classes, 2)
            if stride == 8:
                self.score_pool3 = nn.Conv2d(256, num_classes, 1)
                self.upscore_pool4 = _upsample(num_classes, 2)
            # zero-initialised skips: training starts from the coarser net's prediction (paper, sec. 4.2)
            for m in (self.score_pool4, getattr(self, "score_pool3", None)):
                if m is not None:
                    nn.init.zeros_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        score = self.score_fr(self.head(self.to_pool5(pool4)))
        if self.stride == 32:
            return score
        score = self.upscore2(score) + self.score_pool4(pool4)        # fuse pool4 by summation
        if self.stride == 16:
            return score
        return self.upscore_pool4(score) + self.score_pool3(pool3)    # fuse pool3 by summation


def _build(stride: int):
    def build(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        enc = check_fixed_encoder(f"fcn{stride}s", encoder, ("vgg16", "vgg16_bn"))
        net = FCN(num_classes, in_channels, stride, enc, "imagenet" if encoder_weights == "imagenet" else None)
        report = None
        if encoder_weights and encoder_weights != "imagenet":
            # one Sequential over the shared layers numbers them like torchvision's vgg.features (0..30)
            vgg_features = nn.Sequential(*net.to_pool3, *net.to_pool4, *net.to_pool5)
            report = load_encoder_weights(vgg_features, encoder_weights)
        model = Segmenter(net, divisor=32)
        model.encoder_report = report
        return model
    return build


def register(models: Registry) -> None:
    common = {"family": "FCN", "default_encoder": "vgg16", "onnx": True}
    models.register("fcn32s", **common, lr=1e-4,
                    use="the 2015 baseline: coarse stride-32 predictions; for comparison and teaching")(_build(32))
    models.register("fcn16s", **common, lr=1e-4,
                    use="FCN with the pool4 skip: finer than FCN-32s; for comparison and teaching")(_build(16))
    models.register("fcn8s", **common, lr=1e-4,
                    use="classic FCN with pool3+pool4 skips; heavy (134M params, fc6/fc7), a reference point")(_build(8))
