"""Class imbalance: median frequency weights, repeat-factor sampling, the epoch order, OHEM."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import pixelseg
from pixelseg.data.index import Sample
from pixelseg.data.sampling import EpochSampler, class_stats, epoch_order, median_frequency_weights, repeat_factors
from pixelseg.data.tools.synth import generate
from pixelseg.losses import build_loss

from tests.helpers import tinynet

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: extra threads only wait on each other


def _mask(path: Path, counts: dict[int, int]) -> Sample:
    values = np.concatenate([np.full(n, v, np.uint8) for v, n in counts.items()])
    Image.fromarray(values.reshape(10, -1)).save(path)
    return Sample(path, path, path.stem)


@pytest.fixture
def known(tmp_path) -> list[Sample]:
    """4 classes, 100 pixels an image. class 0: 90+100+50 px in all 3 images; class 1: 10 px in 1 image;
    class 2: 40 px in 1 image (+10 ignored px there); class 3: never."""
    return [_mask(tmp_path / "a.png", {0: 90, 1: 10}),
            _mask(tmp_path / "b.png", {0: 100}),
            _mask(tmp_path / "c.png", {0: 50, 2: 40, 255: 10})]


def test_median_frequency_weights_on_known_frequencies(known):
    stats = class_stats(known, 4)
    assert stats.pixels.tolist() == [[90, 10, 0, 0], [100, 0, 0, 0], [50, 0, 40, 0]]   # ignore not counted
    # freq(c) = class pixels / labelled pixels of the images holding c:
    #   0: 240/290, 1: 10/100, 2: 40/90;  median = 40/90;  weight = median / freq;  absent class 3 -> 1
    w = median_frequency_weights(stats)
    expected = [(40 / 90) / (240 / 290), (40 / 90) / 0.1, 1.0, 1.0]
    assert w == pytest.approx(expected, rel=1e-5)
    assert w[1] > w[2] > w[0]            # the rarer a class, the heavier


def test_repeat_factors_on_known_frequencies(known):
    stats = class_stats(known, 4)
    # image shares: class 0 in 3/3, classes 1 and 2 in 1/3 each; t = 0.6 -> r = sqrt(0.6 / (1/3))
    r = repeat_factors(stats, 0.6)
    assert r == pytest.approx([math.sqrt(1.8), 1.0, math.sqrt(1.8)])
    assert repeat_factors(stats, 0.1) == pytest.approx([1.0, 1.0, 1.0])   # nothing rarer than 10%: no repeats


def test_epoch_order_is_seeded_and_repeats_as_asked():
    assert sorted(epoch_order(10, seed=1, epoch=0)) == list(range(10))
    assert epoch_order(10, 1, 0) == epoch_order(10, 1, 0) != epoch_order(10, 1, 1)
    factors = np.array([1.0, 2.0, 2.5, 1.0])
    counts = np.zeros(4)
    epochs = 200
    for e in range(epochs):
        order = epoch_order(4, 3, e, factors)
        counts += np.bincount(order, minlength=4)
        assert {1, 2} <= set(order)
    assert counts / epochs == pytest.approx(factors, abs=0.1)            # expected repeats = factor
    assert epoch_order(4, 3, 5, factors) == epoch_order(4, 3, 5, factors)


def test_rank_shares_form_the_one_process_batches():
    order = epoch_order(22, 0, 0)
    bs, world = 6, 2
    single = list(EpochSampler(order, start=6))
    ranks = [list(EpochSampler(order, start=6, rank=r, world=world)) for r in range(world)]
    assert len(ranks[0]) == len(ranks[1]) == 8                           # equal steps on every rank
    for j in range(len(ranks[0]) // (bs // world)):
        shares = sum((rk[j * bs // world:(j + 1) * bs // world] for rk in ranks), [])
        assert sorted(shares) == sorted(single[j * bs:(j + 1) * bs])     # global batch j, split


def test_ohem_keeps_hard_pixels_and_at_least_the_minimum():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    # confident and right everywhere except 6 pixels (noise: no two pixels tie on the loss)
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 8.0 + 0.1 * torch.randn(2, 3, 8, 8)
    wrong = torch.zeros_like(target, dtype=torch.bool)
    wrong.view(-1)[torch.randperm(128)[:6]] = True
    logits = torch.where(wrong.unsqueeze(1), -logits, logits).requires_grad_()
    ohem = build_loss("ohem", 3)
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    # 6 hard pixels < min_kept = 128/16 = 8: the 8 highest losses are kept
    top = per_pixel.flatten().topk(8).values.mean()
    assert ohem(logits, target).item() == pytest.approx(top.item(), rel=1e-5)
    # many hard pixels: their mean, and easy pixels get no gradient
    logits2 = torch.zeros(2, 3, 8, 8, requires_grad=True)            # p = 1/3 < 0.7 everywhere: all hard
    assert ohem(logits2, target).item() == pytest.approx(math.log(3), rel=1e-5)
    loss = ohem(logits, target)
    loss.backward()
    kept = per_pixel.flatten() >= per_pixel.flatten().topk(8).values[-1]
    grads = logits.grad.abs().sum(1).flatten()
    assert (grads[~kept] == 0).all() and (grads[kept] > 0).all()
    # an all-ignored batch is 0 with zero gradient, like every other term
    ignored = torch.full_like(target, 255)
    z = torch.randn(2, 3, 8, 8, requires_grad=True)
    value = ohem(z, ignored)
    value.backward()
    assert value.item() == 0.0 and (z.grad == 0).all()


def test_auto_class_weights_and_repeat_sampling_in_training(tmp_path):
    data = tmp_path / "d"
    generate(data, n_train=12, n_val=4, size=(32, 32), seed=1)
    with tinynet.registered():
        run = pixelseg.train(data, out=str(tmp_path / "run"), epochs=1, model=tinynet.NAME, image_size=(32, 32),
                             batch_size=4, num_workers=0, threads=1, quiet=True, class_weights="auto",
                             sampling="repeat", repeat_threshold=0.9, loss="ohem+dice")
    from pixelseg.data.formats import open_dataset
    index = open_dataset(data)
    stats = class_stats(index.splits["train"], index.classes.num_classes)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    # the resolved numbers, not "auto", so `train --config RUN/config.yaml` reproduces the run
    assert cfg["loss"]["class_weights"] == pytest.approx(median_frequency_weights(stats))
    recipe = json.loads((run / "recipe.json").read_text())
    assert recipe["repeat_factors"] == pytest.approx(repeat_factors(stats, 0.9).tolist())
    assert any(c["key"] == "loss.class_weights" and "median frequency" in c["why"] for c in recipe["chosen"])
    assert max(recipe["repeat_factors"]) > 1.0
