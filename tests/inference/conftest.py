"""Fixtures for the inference tests: a tiny run folder with seeded random weights, made in a second
(parity, geometry, TTA and video need no training)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pixelseg.inference.bench import model_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def random_run(tmp_path_factory) -> Path:
    return model_run("unet", (64, 64), 3, tmp_path_factory.mktemp("random") / "run", encoder="resnet18")


@pytest.fixture
def scene() -> np.ndarray:
    """A 64x64 RGB image with structure (rectangles over noise), so predictions are not uniform."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
    image[10:40, 5:30] = (220, 40, 40)
    image[30:60, 35:62] = (40, 200, 60)
    return image
