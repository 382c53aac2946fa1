"""The model registry. Every model file is imported and registered here explicitly, so a model that
fails to register is an import error at once, never a silently missing name."""
from __future__ import annotations

from torch import nn

from pixelseg.models import lraspp, smp_models
from pixelseg.models.base import Segmenter, default_mean_std
from pixelseg.registry import Registry

MODELS = Registry("model")
smp_models.register(MODELS)
lraspp.register(MODELS)

__all__ = ["MODELS", "build_model", "Segmenter", "default_mean_std", "count_parameters"]


def build_model(name: str, num_classes: int, in_channels: int = 3, encoder: str | None = None,
                encoder_weights: str | None = None) -> Segmenter:
    entry = MODELS.get(name)
    return entry.builder(num_classes, in_channels, encoder, encoder_weights)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
