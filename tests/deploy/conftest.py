"""Fixtures for the export tests: tiny run folders.

`random_run`: a U-Net/resnet18 with seeded random weights (parity and geometry need no training).
`trained_run`: a U-Net trained briefly on an easy colour-coded dataset, so its logits have real margins,
as INT8 calibration and agreement need; its data root (in config.yaml) holds train/val splits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelseg.inference.bench import model_run

pytestmark = pytest.mark.usefixtures("one_thread")

COLORS = {1: (220, 40, 40), 2: (40, 200, 60)}    # class -> RGB of the objects in the easy dataset


def easy_scene(rng: np.random.Generator, size=(32, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Red and green rectangles (classes 1, 2) on a noisy dark background (class 0)."""
    h, w = size
    image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(3):
        cls = int(rng.integers(1, 3))
        y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
        dh, dw = rng.integers(5, 14, 2)
        image[y:y + dh, x:x + dw] = np.array(COLORS[cls]) + rng.integers(-15, 15, 3)
        mask[y:y + dh, x:x + dw] = cls
    return image, mask


def write_easy_dataset(root: Path, n_train: int = 24, n_val: int = 6, seed: int = 0) -> Path:
    from pixelseg.data.classes import ClassTable
    from pixelseg.data.formats.folder import write_classes_json
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            image, mask = easy_scene(rng)
            Image.fromarray(image).save(root / split / "images" / f"{split}_{i:03d}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{split}_{i:03d}.png")
    write_classes_json(root, ClassTable(("background", "red", "green"), ((0, 0, 0), COLORS[1], COLORS[2]), 255))
    return root


@pytest.fixture(scope="session")
def random_run(tmp_path_factory) -> Path:
    return model_run("unet", (64, 64), 3, tmp_path_factory.mktemp("random") / "run", encoder="resnet18")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """24 Adam steps of a plain loop (not `pixelseg.train`: its per-epoch validation and checkpoints would
    triple the time) reach ~99% pixel accuracy on the easy data; then a run folder like training writes."""
    import yaml

    from pixelseg.data.dataset import normalize
    from pixelseg.data.formats import open_dataset
    from pixelseg.data.io import read_image, read_mask
    from pixelseg.run.checkpoints import save_weights
    from pixelseg.models import build_model, default_mean_std
    from pixelseg.run.folder import Preprocessing, RunFolder, RunInfo

    root = tmp_path_factory.mktemp("easy")
    data = write_easy_dataset(root / "data")
    index = open_dataset(data)
    mean, std = default_mean_std(3)
    train = index.split("train")
    x = torch.stack([normalize(read_image(s.image, 3), mean, std) for s in train])
    y = torch.stack([torch.from_numpy(read_mask(s.mask).astype(np.int64)) for s in train])
    torch.manual_seed(0)
    model = build_model("unet", 3, 3, "resnet18")
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(24):
        i = torch.randint(0, len(x), (8,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    run = root / "run"
    info = RunInfo(run, "unet", "resnet18", index.classes, Preprocessing((32, 32), tuple(mean), tuple(std), 3), {})
    run.mkdir()
    RunFolder(info.path).write_info(info)
    save_weights(info.weights, model.eval())
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"root": str(data)}}))
    return run


@pytest.fixture
def easy_image() -> np.ndarray:
    """An unseen image of the easy dataset's kind."""
    return easy_scene(np.random.default_rng(99))[0]
