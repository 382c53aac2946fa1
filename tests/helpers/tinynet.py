"""A BatchNorm-free segmentation net for the engine tests (GroupNorm: its output does not depend on how a
batch is split over processes, so one process and N processes must train to the same weights).

Run as a script it is the pixelseg CLI with this net registered as `test-tinynet`, for the tests that
start training in a subprocess or under torchrun:  python tests/helpers/tinynet.py train --model test-tinynet ...
"""
from __future__ import annotations

import contextlib

from torch import nn

NAME = "test-tinynet"
DROPOUT_NAME = "test-tinynet-dropout"     # the same net with dropout: its training draws from the global RNG


def build(num_classes: int, in_channels: int, encoder=None, encoder_weights=None, dropout: float = 0.0):
    from pixelseg.models import Segmenter
    net = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
                        *([nn.Dropout2d(dropout)] if dropout else []), nn.Conv2d(16, num_classes, 1))
    return Segmenter(net, divisor=1)


def build_dropout(num_classes: int, in_channels: int, encoder=None, encoder_weights=None):
    return build(num_classes, in_channels, dropout=0.3)


def register() -> None:
    from pixelseg.models import MODELS
    if NAME not in MODELS:
        MODELS.register(NAME, family="test", use="engine tests")(build)
    if DROPOUT_NAME not in MODELS:
        MODELS.register(DROPOUT_NAME, family="test", use="engine tests")(build_dropout)


@contextlib.contextmanager
def registered():
    """The test net in the registry for the duration of a test, then gone (other tests list every model)."""
    from pixelseg.models import MODELS
    register()
    try:
        yield NAME
    finally:
        MODELS._entries.pop(NAME, None)
        MODELS._entries.pop(DROPOUT_NAME, None)


if __name__ == "__main__":
    register()
    from pixelseg.cli import exit_process, main
    exit_process(main())
