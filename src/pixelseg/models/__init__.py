"""The model registry. Every model file is imported and registered here explicitly, so a model that
fails to register is an import error at once, never a silently missing name.

Each registration carries its info: family, default encoder, typical use, and where they apply: a
special learning rate (lr), a minimum input side (min_input), the published auxiliary-loss weight
(aux_weight), and whether it exports to ONNX with dynamic H/W (onnx: True, or the reason it cannot).
"""
from __future__ import annotations

from torch import nn

from pixelseg.models import (
    bisenetv2,
    fast_scnn,
    fcn,
    lraspp,
    pretrained,
    pspnet,
    segnet,
    smp_models,
    unet_plain,
)
from pixelseg.models.base import Segmenter, default_mean_std
from pixelseg.registry import Registry

MODELS = Registry("model")
smp_models.register(MODELS)
lraspp.register(MODELS)
fcn.register(MODELS)
segnet.register(MODELS)
unet_plain.register(MODELS)
pspnet.register(MODELS)
fast_scnn.register(MODELS)
bisenetv2.register(MODELS)

__all__ = [
    "MODELS",
    "Segmenter",
    "build_model",
    "count_parameters",
    "default_mean_std",
    "model_mean_std",
    "onnx_support",
]


def build_model(name: str, num_classes: int, in_channels: int = 3, encoder: str | None = None,
                encoder_weights: str | None = None) -> Segmenter:
    """Build a registered model. `encoder_weights`: None or "none" (random init), "imagenet" (the weights
    installed as a package when the encoder has them, else the hub), or a local file. The model carries
    `weights_provenance`: where its encoder's weights came from (None for random init)."""
    entry = MODELS.get(name)
    weights, provenance = encoder_weights_source(name, encoder, encoder_weights)
    model = entry.builder(num_classes, in_channels, encoder, weights)
    model.weights_provenance = provenance
    return model


def encoder_weights_source(name: str, encoder: str | None, encoder_weights: str | None) -> tuple[str | None, dict | None]:
    """What the builder is given for `encoder_weights`, and its provenance: packaged ImageNet weights become
    the checked safetensors file in pixelseg's cache (offline), so "imagenet" needs no network for them."""
    if encoder_weights in (None, "", "none"):
        return None, None
    enc = encoder or MODELS.get(name).info.get("default_encoder")
    if encoder_weights == "imagenet":
        packaged = pretrained.packaged_for(enc)
        if packaged is not None and pretrained.installed(packaged):
            path, provenance = pretrained.offline_file(enc)
            return str(path), provenance
        return "imagenet", pretrained.hub_provenance(enc)
    return encoder_weights, pretrained.file_provenance(encoder_weights)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_mean_std(model: nn.Module, in_channels: int) -> tuple[list[float], list[float]]:
    """The input normalization to train and predict with: the encoder's own pretraining statistics when
    it declares them (timm encoders), ImageNet's otherwise. It is written into the run folder."""
    declared = getattr(model, "mean_std", None)
    return (list(declared[0]), list(declared[1])) if declared else default_mean_std(in_channels)


def onnx_support(name: str) -> tuple[bool, str]:
    """(exports?, note): whether `name` exports to ONNX with dynamic H/W, and if not, why."""
    flag = MODELS.get(name).info.get("onnx", True)
    return (True, "") if flag is True else (False, str(flag))
