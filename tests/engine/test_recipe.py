"""Automatic choices (the default recipe) and the learning-rate schedule."""
from __future__ import annotations

import math

import pytest

from pixelseg.config import from_dict
from pixelseg.data.formats import open_dataset
from pixelseg.data.tools.synth import generate
from pixelseg.engine.recipe import Hardware, choose_image_size, resolve
from pixelseg.engine.schedule import lr_factor

CPU2 = Hardware("cpu", "2-core CPU", 2)
GPU = Hardware("cuda:0", "Some GPU", 16, 80.0)
GPU_MODEL = "fpn"


@pytest.mark.parametrize("sizes, hw, expect", [
    ([(1024, 2048)] * 3, CPU2, (128, 256)),        # Cityscapes-like on a CPU: long side capped at 256
    ([(1024, 2048)] * 3, GPU, (256, 512)),
    ([(100, 75), (100, 75), (300, 300)], CPU2, (96, 64)),   # median, rounded to multiples of 32
    ([(20, 20)], CPU2, (64, 64)),                 # never below 64
])
def test_image_size(sizes, hw, expect):
    size, why = choose_image_size(sizes, hw)
    assert size == expect and why


def test_image_size_respects_a_models_minimum_input():
    assert choose_image_size([(128, 128)], CPU2, 160)[0] == (160, 160)      # upsampled for a 1/8-resolution head
    assert choose_image_size([(96, 192)], CPU2, 160)[0] == (96, 192)        # long side already large enough
    assert choose_image_size([(1024, 2048)], CPU2, 160)[0] == (128, 256)    # the cap still applies


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("d")
    generate(root, n_train=8, n_val=2, size=(96, 160), seed=0)
    return open_dataset(root)


def test_resolve_fills_every_automatic_choice_and_says_why(index):
    cfg, chosen = resolve(from_dict({}, {"data.root": str(index.root), "train.max_minutes": 5}), index, CPU2)
    keys = {k for k, _, _ in chosen}
    assert {"model.name", "data.image_size", "data.in_channels", "train.batch_size", "train.lr", "data.augment"} <= keys
    assert all(why for _, _, why in chosen)
    # pretrained by default: FPN on the EfficientNet-Lite0 weights installed with pixelseg
    assert (cfg.model.name, cfg.model.encoder, cfg.model.encoder_weights) == \
        ("fpn", "tu-tf_efficientnet_lite0", "imagenet")
    assert cfg.data.image_size == (96, 160) and cfg.data.in_channels == 3
    assert cfg.train.lr == 5e-3                      # measured for pretrained encoders (recipe.PRETRAINED_LR)
    assert cfg.data.augment == "light"               # short CPU budget
    assert cfg.train.epochs is None                  # the budget decides
    assert cfg.train.threads == 2 and cfg.data.num_workers == 0


def test_from_scratch_keeps_the_from_scratch_recipe(index):
    cfg, _ = resolve(from_dict({}, {"data.root": str(index.root), "train.max_minutes": 5,
                                    "model.encoder_weights": "none"}), index, CPU2)
    assert cfg.model.name == "lraspp" and cfg.data.image_size == (96, 160)
    assert cfg.train.lr == 1e-2                      # the model's own registered learning rate


def test_resolve_respects_what_the_user_gave(index):
    given = from_dict({}, {"data.root": str(index.root), "model.name": "unet", "train.lr": 0.02,
                           "data.augment": "strong", "train.batch_size": 3, "data.image_size": [64, 64]})
    cfg, chosen = resolve(given, index, CPU2)
    assert (cfg.model.name, cfg.train.lr, cfg.data.augment, cfg.train.batch_size, cfg.data.image_size) == \
        ("unet", 0.02, "strong", 3, (64, 64))
    assert cfg.model.encoder == "tu-tf_efficientnet_lite0"      # the encoder with weights installed
    assert "model.name" not in {k for k, _, _ in chosen}
    assert cfg.train.epochs == 50 and cfg.data.augment == "strong"


def test_gpu_recipe(index):
    cfg, _ = resolve(from_dict({}, {"data.root": str(index.root), "train.max_minutes": 5}), index, GPU)
    assert cfg.model.name == GPU_MODEL and cfg.model.encoder.startswith("tu-tf_efficientnet_lite")
    assert cfg.model.encoder_weights == "imagenet" and cfg.data.augment == "default"
    assert cfg.train.amp in ("bf16", "fp16") and cfg.data.num_workers > 0
    scratch, _ = resolve(from_dict({}, {"data.root": str(index.root), "train.max_minutes": 5,
                                        "model.encoder_weights": "none"}), index, GPU)
    assert scratch.model.name == "unet" and scratch.model.encoder == "resnet34"


def test_lr_schedule_shapes():
    assert lr_factor(0.0, 0.05, "poly") < 0.05                     # warm-up starts low
    assert lr_factor(0.025, 0.05, "poly") == pytest.approx(0.5, abs=0.02)
    assert lr_factor(0.05, 0.05, "poly") == pytest.approx(1.0)
    assert lr_factor(1.0, 0.05, "poly") == 0.0 and lr_factor(1.0, 0.05, "cosine") == pytest.approx(0.0)
    mid = 0.05 + 0.95 / 2
    assert lr_factor(mid, 0.05, "cosine") == pytest.approx(0.5)
    assert lr_factor(mid, 0.05, "poly") == pytest.approx(0.5 ** 0.9)
    vals = [lr_factor(p / 100, 0.05, "poly") for p in range(5, 101)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))               # monotone decay after warm-up
    assert not any(math.isnan(v) for v in vals)


# ---------------------------------------------------------------- big images: scale and crop
def _big_set(root, side=1600, radius=16, n=3):
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("val", 1)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(count):
            mask = np.zeros((side, side), np.uint8)
            for _ in range(40):
                cv2.circle(mask, tuple(int(v) for v in rng.integers(40, side - 40, 2)), radius, int(rng.integers(1, 4)), -1)
            cv2.imwrite(str(root / split / "images" / f"{i}.png"), np.zeros((side, side, 3), np.uint8))
            cv2.imwrite(str(root / split / "masks" / f"{i}.png"), mask)
    return open_dataset(root)


def test_the_built_in_data_keeps_todays_whole_image_recipe(tmp_path):
    """The quickstart's data resolves to exactly the config it got before big-image support."""
    generate(tmp_path, n_train=40, n_val=8, seed=0)
    index = open_dataset(tmp_path)
    cfg, chosen = resolve(from_dict({}, {"data.root": str(tmp_path), "train.out": "x", "train.max_minutes": 5}),
                          index, CPU2)
    d = cfg.to_dict()
    d["data"].pop("root")
    assert d["data"] == {"format": "folder", "image_size": [160, 160], "scale": None, "crop": None, "crop_focus": 0.5,
                         "augment": "light", "in_channels": 3, "num_workers": 0, "unlabelled": None,
                         "val_fraction": 0.1, "binary_sigmoid": False}
    assert ("data.format", "folder", "detected from the folder's layout") in chosen
    assert (cfg.model.name, cfg.train.batch_size, cfg.train.lr, cfg.train.threads) == ("fpn", 10, 5e-3, 2)
    assert not {"data.scale", "data.crop"} & {k for k, _, _ in chosen}


@pytest.mark.slow
def test_big_images_get_a_scale_from_their_objects_and_a_crop_from_the_budget(tmp_path):
    index = _big_set(tmp_path)              # objects 33 px across: scale 24/33 -> 0.75
    cfg, chosen = resolve(from_dict({}, {"data.root": str(tmp_path), "train.out": "x"}), index, CPU2)
    why = {k: w for k, _, w in chosen}
    assert cfg.data.scale == 0.75 and cfg.data.crop == (256, 256) and cfg.data.image_size == (256, 256)
    assert cfg.train.batch_size == 4                               # 4 x 256^2 = the CPU's ~262k px a step
    assert "p10 33 px" in why["data.scale"] and "262,144" in why["data.crop"]
    gpu, _ = resolve(from_dict({}, {"data.root": str(tmp_path), "train.out": "x"}), index, GPU)
    assert gpu.data.scale == 0.75 and gpu.data.crop == (704, 704) and gpu.train.batch_size == 8


def test_given_scale_or_image_size_wins(tmp_path):
    index = _big_set(tmp_path)
    cfg, _ = resolve(from_dict({}, {"data.root": str(tmp_path), "train.out": "x", "data.scale": 0.5}), index, CPU2)
    assert cfg.data.scale == 0.5 and cfg.data.crop == (256, 256)
    old, _ = resolve(from_dict({}, {"data.root": str(tmp_path), "train.out": "x", "data.image_size": [256, 256]}),
                     index, CPU2)
    assert old.data.scale is None and old.data.crop is None and old.data.image_size == (256, 256)


@pytest.mark.slow
def test_tiny_objects_keep_native_resolution_on_a_cpu_and_grow_on_a_gpu(tmp_path):
    index = _big_set(tmp_path, radius=5)     # objects 11 px across: 24/11 would be x2.25
    cpu, chosen = resolve(from_dict({}, {"data.root": str(tmp_path), "train.out": "x"}), index, CPU2)
    assert cpu.data.scale == 1.0 and "capped at native resolution" in dict((k, w) for k, _, w in chosen)["data.scale"]
    gpu, _ = resolve(from_dict({}, {"data.root": str(tmp_path), "train.out": "x"}), index, GPU)
    assert gpu.data.scale == 2.0
