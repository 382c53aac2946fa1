"""Binary segmentation as one sigmoid channel: the loss terms, thresholded predictions and the threshold
sweep (the data side: 0/255 masks are read through classes.json 'values', see test_standard_formats)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelseg.config import from_dict
from pixelseg.errors import PixelsegError
from pixelseg.losses import build_loss
from pixelseg.measure.metrics import ConfusionMatrix, ThresholdSweep, mean_iou
from pixelseg.models.outputs import labels_from_logits

IGN = 255


def _batch(seed=0, n=2, h=8, w=10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, h, w, generator=g) * 2
    t = torch.randint(0, 2, (n, h, w), generator=g)
    t[:, :2, :3] = IGN
    return x, t


@pytest.mark.parametrize("weights", [None, [1.0, 3.0]])
def test_bce_equals_two_class_ce_on_logits_zero_and_x(weights):
    x, t = _batch()
    bce = build_loss("ce", 2, IGN, weights, binary_sigmoid=True)(x, t)
    ce = build_loss("ce", 2, IGN, weights)(torch.cat([torch.zeros_like(x), x], 1), t)
    torch.testing.assert_close(bce, ce)


@pytest.mark.parametrize("spec", ["ce", "dice", "focal", "jaccard", "lovasz", "ce+dice"])
def test_every_term_ignores_ignored_pixels(spec):
    x, t = _batch(1)
    loss = build_loss(spec, 2, IGN, binary_sigmoid=True)
    x1 = x.clone().requires_grad_(True)
    v1 = loss(x1, t)
    v1.backward()
    assert torch.isfinite(v1) and x1.grad[:, :, :2, :3].abs().max() == 0   # no gradient at ignored pixels
    x2 = x.clone()
    x2[:, :, :2, :3] = 50.0                                                  # anything there: same loss
    torch.testing.assert_close(loss(x2, t), v1.detach())
    # all ignored: exactly 0 with zero gradients, never NaN
    xa = x.clone().requires_grad_(True)
    va = loss(xa, torch.full_like(t, IGN))
    va.backward()
    assert va.item() == 0.0 and xa.grad.abs().max() == 0


def test_perfect_logits_give_a_low_loss_and_wrong_ones_a_high_one():
    _, t = _batch(2)
    good = torch.where(t == 1, 8.0, -8.0).unsqueeze(1).float()
    loss = build_loss("ce+dice", 2, IGN, binary_sigmoid=True)
    assert loss(good, t) < 0.01 < 1.0 < loss(-good, t)


def test_binary_sigmoid_refuses_what_it_cannot_do():
    with pytest.raises(PixelsegError, match="exactly 2 classes"):
        build_loss("ce", 3, IGN, binary_sigmoid=True)
    with pytest.raises(PixelsegError, match="ohem"):
        build_loss("ohem", 2, IGN, binary_sigmoid=True)
    with pytest.raises(ValueError, match="1-channel"):
        build_loss("ce", 2, IGN, binary_sigmoid=True)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    assert from_dict({"data": {"binary_sigmoid": True}}).data.binary_sigmoid is True
    from pixelseg.data.classes import ClassTable, output_channels
    assert output_channels(ClassTable.derive(2), True) == 1 and output_channels(ClassTable.derive(2)) == 2
    with pytest.raises(PixelsegError, match="exactly 2 classes"):
        output_channels(ClassTable.derive(3), True)


def test_labels_from_logits_threshold_and_argmax():
    x, _ = _batch(3)
    at_half = labels_from_logits(x)
    torch.testing.assert_close(at_half, labels_from_logits(torch.cat([torch.zeros_like(x), x], 1)))
    p = torch.sigmoid(x[:, 0])
    torch.testing.assert_close(labels_from_logits(x, 0.8), (p > 0.8).long())
    assert labels_from_logits(x, 0.9).sum() < labels_from_logits(x, 0.1).sum()
    with pytest.raises(PixelsegError):
        labels_from_logits(x, 1.0)


def test_threshold_sweep_matches_the_confusion_matrix_and_finds_the_gap():
    rng = np.random.default_rng(0)
    t = torch.from_numpy(rng.integers(0, 2, (3, 20, 20)))
    # foreground probabilities in 0.55..1, background in 0..0.35: every threshold in between is perfect
    p = torch.from_numpy(np.where(t.numpy() == 1, rng.uniform(0.55, 1, t.shape), rng.uniform(0, 0.35, t.shape)))
    t[0, :5] = IGN
    logits = torch.logit(p).unsqueeze(1).float()
    sweep = ThresholdSweep(IGN)
    sweep.update(logits[:2], t[:2])
    sweep.update(logits[2:], t[2:])
    th, m = sweep.miou()
    for k in (20, 45, 70):
        cm = ConfusionMatrix(2, IGN)
        cm.update(labels_from_logits(logits, th[k] + 1e-9), t)
        assert m[k] == pytest.approx(mean_iou(cm.matrix), abs=1e-9)
    best_t, best_m = sweep.best()
    assert 0.35 <= best_t <= 0.55 and best_m == pytest.approx(1.0)
    with pytest.raises(PixelsegError, match="binary masks"):
        sweep.update(logits, torch.full_like(t, 3))
