"""Encoder-decoder models from segmentation-models-pytorch: any smp encoder or any timm one ("tu-<name>")."""
from __future__ import annotations

from pixelseg.errors import PixelsegError
from pixelseg.models.base import Segmenter, encoder_mean_std, load_encoder_weights
from pixelseg.models.blocks import make_pooling_exportable, norm_for_pooled
from pixelseg.registry import Registry


def _smp(arch: str, num_classes: int, in_channels: int, encoder: str, encoder_weights: str | None, **kw):
    import segmentation_models_pytorch as smp

    hub = encoder_weights if encoder_weights in ("imagenet",) else None
    try:
        net = getattr(smp, arch)(encoder_name=encoder, encoder_weights=hub, in_channels=in_channels,
                                 classes=num_classes, **kw)
    except KeyError as e:
        raise PixelsegError(f"unknown encoder '{encoder}' ({e}); use an smp encoder name (resnet18, mobilenet_v2, ...) "
                            "or any timm model as tu-<name>") from None
    except (OSError, RuntimeError, ValueError) as e:
        if hub:
            raise PixelsegError(f"could not fetch ImageNet weights for encoder '{encoder}' ({str(e).splitlines()[0][:160]}); "
                                "without network access pass a local file with --encoder-weights PATH") from None
        raise PixelsegError(f"cannot build {arch} with encoder '{encoder}': {str(e).splitlines()[0][:200]}") from None
    if arch in ("DeepLabV3", "DeepLabV3Plus"):
        _fix_aspp_pooling(net)
    _fix_pooled_norms(net)
    make_pooling_exportable(net)  # UPerNet's pyramid pooling: ONNX has no adaptive pooling for dynamic sizes
    report = None
    if encoder_weights and not hub:
        # timm encoders ("tu-...") hold the timm model as `.model`: timm checkpoints name its tensors directly
        report = load_encoder_weights(getattr(net.encoder, "model", net.encoder), encoder_weights)
    model = Segmenter(net, divisor=32)  # the encoders downsample 5 times
    model.encoder_report = report
    # timm encoders ("tu-...") declare the normalization they were pretrained with; smp's own ones use ImageNet's
    model.mean_std = encoder_mean_std(getattr(net.encoder, "model", net.encoder), in_channels)
    return model


def _fix_aspp_pooling(net) -> None:
    """BatchNorm over the 1x1 image-pooling branch of ASPP is undefined at batch size 1 in train mode
    (one value per channel); GroupNorm there keeps the branch normalized and the batch-1 contract."""
    from torch import nn
    for m in net.decoder.modules():
        if type(m).__name__ == "ASPPPooling":
            bn = m[2]
            m[2] = nn.GroupNorm(32 if bn.num_features % 32 == 0 else 1, bn.num_features)


def _fix_pooled_norms(net) -> None:
    """The same batch-1 problem in UPerNet's pyramid pooling: its 1x1 bin is normalized by GroupNorm."""
    from torch import nn
    for m in net.modules():
        if isinstance(m, nn.Sequential) and len(m) > 1 and isinstance(m[0], nn.AdaptiveAvgPool2d) \
                and m[0].output_size in (1, (1, 1)):
            for branch in list(m)[1:]:
                for sub in branch.modules():
                    for name, child in sub.named_children():
                        if isinstance(child, nn.BatchNorm2d):
                            setattr(sub, name, norm_for_pooled(child.num_features))


def register(models: Registry) -> None:
    @models.register("unet", family="U-Net", default_encoder="resnet18",
                     use="general purpose; strong on small data and fine structures (medical, aerial)")
    def unet(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        return _smp("Unet", num_classes, in_channels, encoder or "resnet18", encoder_weights)

    @models.register("deeplabv3plus", family="DeepLab", default_encoder="resnet18",
                     use="large scenes with objects at many scales (driving, scene parsing)")
    def deeplabv3plus(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        return _smp("DeepLabV3Plus", num_classes, in_channels, encoder or "resnet18", encoder_weights)

    @models.register("fpn", family="FPN", default_encoder="resnet18",
                     use="light decoder over a feature pyramid; a good speed/accuracy middle ground")
    def fpn(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        return _smp("FPN", num_classes, in_channels, encoder or "resnet18", encoder_weights)

    @models.register("deeplabv3", family="DeepLab", default_encoder="resnet18",
                     use="atrous convolution + ASPP at output stride 8: context at many scales, coarse edges")
    def deeplabv3(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        return _smp("DeepLabV3", num_classes, in_channels, encoder or "resnet18", encoder_weights)

    @models.register("upernet", family="UPerNet", default_encoder="resnet18",
                     use="pyramid pooling + FPN fusion of all stages; the usual head for transformer/ConvNeXt encoders")
    def upernet(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        return _smp("UPerNet", num_classes, in_channels, encoder or "resnet18", encoder_weights)

    @models.register("segformer", family="SegFormer", default_encoder="mit_b0",
                     use="transformer encoder (MiT) + all-MLP decoder; strong accuracy per FLOP on GPUs")
    def segformer(num_classes, in_channels=3, encoder=None, encoder_weights=None):
        return _smp("Segformer", num_classes, in_channels, encoder or "mit_b0", encoder_weights)
