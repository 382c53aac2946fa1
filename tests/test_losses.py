import math

import pytest
import torch
import torch.nn.functional as F

from pixelseg.errors import PixelsegError
from pixelseg.losses import LOSS_NAMES, build_loss

K, IGN = 4, 255


def batch(seed=0, ignore_frac=0.3, n=2, h=6, w=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, K, h, w, generator=g)
    target = torch.randint(0, K, (n, h, w), generator=g)
    target[torch.rand(n, h, w, generator=g) < ignore_frac] = IGN
    return logits, target


def value_and_grad(loss, logits, target):
    x = logits.clone().requires_grad_(True)
    value = loss(x, target)
    value.backward()
    return value.detach(), x.grad


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_ignored_pixels_change_nothing(name):
    loss = build_loss(name, K)
    logits, target = batch()
    ignored = (target == IGN).unsqueeze(1).expand_as(logits)
    assert ignored.any() and not ignored.all()
    v1, g1 = value_and_grad(loss, logits, target)
    other = logits.clone()
    other[ignored] = torch.randn(int(ignored.sum())) * 10  # wild logits where the label is ignored
    v2, g2 = value_and_grad(loss, other, target)
    assert torch.isfinite(v1) and v1 > 0
    torch.testing.assert_close(v1, v2, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g1[~ignored], g2[~ignored], rtol=1e-5, atol=1e-7)
    assert (g1[ignored] == 0).all() and (g2[ignored] == 0).all()
    assert g1[~ignored].abs().sum() > 0


@pytest.mark.parametrize("name", LOSS_NAMES + ("ce+dice+focal+lovasz+jaccard",))
def test_all_ignored_batch_gives_zero(name):
    loss = build_loss(name, K, class_weights=[1.0, 2.0, 0.5, 1.0], label_smoothing=0.1)
    logits, _ = batch()
    target = torch.full((2, 6, 5), IGN)
    value, grad = value_and_grad(loss, logits, target)
    assert value.dim() == 0 and torch.isfinite(value) and value.item() == 0.0
    assert torch.isfinite(grad).all() and (grad == 0).all()


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_perfect_logits_beat_random(name):
    loss = build_loss(name, K)
    logits, target = batch(seed=1)
    # +10 for the true class, -10 for the others: confident under softmax (ce, dice, lovasz) and sigmoid (focal)
    perfect = 20.0 * F.one_hot(torch.where(target == IGN, 0, target), K).movedim(-1, 1).float() - 10.0
    assert loss(perfect, target) < loss(logits, target)
    assert loss(perfect, target) < 0.05


def test_ce_class_weights_match_manual():
    w = torch.tensor([1.0, 3.0, 0.5, 2.0])
    logits, target = batch(seed=2)
    valid = target != IGN
    t = torch.where(valid, target, 0)
    nll = -logits.log_softmax(1).gather(1, t.unsqueeze(1)).squeeze(1)
    expected = (w[t] * nll)[valid].sum() / w[t][valid].sum()
    got = build_loss("ce", K, class_weights=w.tolist())(logits, target)
    torch.testing.assert_close(got, expected)
    plain = build_loss("ce", K)(logits, target)
    torch.testing.assert_close(plain, nll[valid].mean())
    assert not torch.isclose(got, plain)
    # a tensor works as well as a list
    torch.testing.assert_close(build_loss("ce", K, class_weights=w)(logits, target), expected)


@pytest.mark.parametrize("weights", [None, [1.0, 3.0, 0.5, 2.0]])
def test_ce_matches_torch_when_some_pixels_count(weights):
    logits, target = batch(seed=3)
    w = None if weights is None else torch.tensor(weights)
    ref = torch.nn.CrossEntropyLoss(weight=w, ignore_index=IGN, label_smoothing=0.2)(logits, target)
    got = build_loss("ce", K, class_weights=weights, label_smoothing=0.2)(logits, target)
    torch.testing.assert_close(got, ref)


def test_label_smoothing_changes_ce():
    logits, target = batch(seed=4)
    a = build_loss("ce", K)(logits, target)
    b = build_loss("ce", K, label_smoothing=0.1)(logits, target)
    assert not torch.isclose(a, b)


def test_class_weights_wrong_length_or_values():
    with pytest.raises(PixelsegError, match="3 value.*4 classes"):
        build_loss("ce", K, class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(PixelsegError, match="non-negative"):
        build_loss("ce", K, class_weights=[1.0, -2.0, 3.0, 1.0])
    with pytest.raises(PixelsegError):
        build_loss("ce", K, class_weights=["a", "b", "c", "d"])


def test_focal_matches_smp_when_some_pixels_count():
    from segmentation_models_pytorch.losses import FocalLoss
    logits, target = batch(seed=5)
    ref = FocalLoss("multiclass", ignore_index=IGN)(logits, target)
    torch.testing.assert_close(build_loss("focal", K)(logits, target), ref)
    w = [1.0, 3.0, 0.5, 2.0]
    ref_w = FocalLoss("multiclass", ignore_index=IGN, class_weights=w)(logits, target)
    torch.testing.assert_close(build_loss("focal", K, class_weights=w)(logits, target), ref_w)


def test_smp_bugs_we_work_around_are_still_there():
    """If smp fixes these, the wrappers in losses.py can go."""
    from segmentation_models_pytorch.losses import FocalLoss, LovaszLoss
    logits, _ = batch()
    target = torch.full((2, 6, 5), IGN)
    assert torch.isnan(FocalLoss("multiclass", ignore_index=IGN)(logits, target))
    assert LovaszLoss("multiclass", ignore_index=IGN)(logits, target).shape != ()
    assert torch.isnan(torch.nn.CrossEntropyLoss(ignore_index=IGN)(logits, target))


def test_sums_and_weights():
    logits, target = batch(seed=6)
    ce, dice, focal = (build_loss(n, K)(logits, target) for n in ("ce", "dice", "focal"))
    torch.testing.assert_close(build_loss("ce+dice", K)(logits, target), ce + dice)
    torch.testing.assert_close(build_loss("0.5*focal+dice", K)(logits, target), 0.5 * focal + dice)
    torch.testing.assert_close(build_loss(" 2 * ce + 1e-1*dice ", K)(logits, target), 2 * ce + 0.1 * dice)


def test_last_terms_are_detached_unweighted_values():
    logits, target = batch(seed=7)
    loss = build_loss("0.5*focal+dice", K)
    total = loss(logits.requires_grad_(True), target)
    assert list(loss.last_terms) == ["focal", "dice"]
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in loss.last_terms.values())
    vals = loss.term_values()
    assert all(isinstance(v, float) for v in vals.values())
    assert total.item() == pytest.approx(0.5 * vals["focal"] + vals["dice"], rel=1e-6)


def test_unknown_name_lists_valid_names():
    with pytest.raises(PixelsegError) as e:
        build_loss("ce+dcie", K)
    msg = str(e.value)
    assert "dcie" in msg and "did you mean 'dice'" in msg
    assert all(n in msg for n in LOSS_NAMES)


@pytest.mark.parametrize("spec", ["", "  ", "ce+", "+dice", "*ce", "0.5*", "ce dice", "-1*ce", "0*ce", "ce+ce",
                                  "0.5**ce", "ce*0.5", "ce,dice"])
def test_malformed_spec(spec):
    with pytest.raises(PixelsegError):
        build_loss(spec, K)


def test_bad_settings():
    with pytest.raises(PixelsegError, match="label_smoothing"):
        build_loss("ce", K, label_smoothing=1.0)
    with pytest.raises(PixelsegError, match="2 classes"):
        build_loss("ce", 1)


def test_every_term_trains_with_class_weights_and_smoothing():
    loss = build_loss("ce+dice+focal+jaccard+lovasz", K, class_weights=[1.0, 2.0, 0.5, 1.0], label_smoothing=0.1)
    logits, target = batch(seed=8)
    value, grad = value_and_grad(loss, logits, target)
    assert math.isfinite(value.item()) and torch.isfinite(grad).all()
    assert set(loss.last_terms) == {"ce", "dice", "focal", "jaccard", "lovasz"}
