import math

import numpy as np
import pytest
import torch

from pixelseg.errors import PixelsegError
from pixelseg.quality.ranking import (
    balanced_entropy,
    image_uncertainty_scores,
    pooled_features,
    rarity_weights,
    select_diverse,
)
from pixelseg.models.outputs import confidence_maps
from pixelseg.measure.calibration import expected_calibration_error, fit_temperature, reliability_diagram_data
from pixelseg.viz.overlay import to_png8


def test_confidence_maps_are_the_softmax_max_and_normalized_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=g) * 3
    conf, ent = confidence_maps(logits)
    assert conf.shape == ent.shape == (2, 6, 7)
    torch.testing.assert_close(conf, torch.softmax(logits, 1).amax(1))
    p = torch.softmax(logits.double(), 1)
    torch.testing.assert_close(ent.double(), -(p * p.log()).sum(1) / math.log(5), atol=1e-6, rtol=1e-5)
    for m in (conf, ent):
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    # uniform scores are as unsure as can be; a huge margin is sure
    flat_c, flat_e = confidence_maps(torch.zeros(4, 3, 3))
    assert torch.allclose(flat_c, torch.full((3, 3), 0.25)) and torch.allclose(flat_e, torch.ones(3, 3))
    sure_c, sure_e = confidence_maps(torch.tensor([100.0, 0, 0])[:, None, None].expand(3, 2, 2))
    assert torch.allclose(sure_c, torch.ones(2, 2)) and float(sure_e.max()) < 1e-6
    # probabilities in give the same maps; numpy in gives numpy out; the temperature softens
    c2, e2 = confidence_maps(torch.softmax(logits, 1), probs=True)
    torch.testing.assert_close(c2, conf)
    torch.testing.assert_close(e2, ent, atol=1e-5, rtol=1e-4)
    cn, _ = confidence_maps(logits[0].numpy())
    assert isinstance(cn, np.ndarray) and np.allclose(cn, conf[0].numpy())
    assert bool((confidence_maps(logits, temperature=2.0)[0] <= conf + 1e-6).all())


def test_one_sigmoid_channel_is_two_classes():
    logits = torch.tensor([[[-2.0, 0.0, 3.0]]])        # 1 x 1 x 3
    conf, ent = confidence_maps(logits)
    s = torch.sigmoid(logits[0])
    torch.testing.assert_close(conf, torch.maximum(s, 1 - s))
    assert ent[0, 1] == pytest.approx(1.0) and float(ent.max()) <= 1.0
    with pytest.raises(PixelsegError, match="N x K x H x W"):
        confidence_maps(torch.zeros(3, 4))


def test_png8_encoding():
    v = np.array([[0.0, 0.5, 1.0], [np.nan, 0.2, 1.2]])
    out = to_png8(v)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 128, 255], [0, 51, 255]])
    x = np.random.default_rng(0).random((50, 50))
    assert np.abs(to_png8(x) / 255.0 - x).max() <= 1 / 510 + 1e-9
    np.testing.assert_array_equal(to_png8(torch.from_numpy(x)), to_png8(x))


def calibrated_data(seed=0, n=4, k=6, size=48):
    """Logits z whose softmax is the true class distribution (labels are drawn from it), so softmax(z)
    is perfectly calibrated and softmax(5 z) is over-confident by a temperature of 5."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, size, size, generator=g) * 1.5
    p = torch.softmax(z, 1).movedim(1, -1).reshape(-1, k)
    labels = torch.multinomial(p, 1, generator=g).reshape(n, size, size)
    labels[:, :4] = 255                               # an ignored band
    return z, labels


def test_temperature_fixes_an_over_confident_model():
    z, labels = calibrated_data()
    over = z * 5
    ece_over = expected_calibration_error(torch.softmax(over, 1), labels)
    t = fit_temperature(over, labels, max_pixels=20_000)
    assert 4.0 < t < 6.0                               # the over-confidence factor, found from the data
    ece_fit = expected_calibration_error(torch.softmax(over / t, 1), labels)
    assert ece_over > 0.15 and ece_fit < 0.03 and ece_fit < ece_over / 5
    assert fit_temperature(over, labels, max_pixels=20_000) == t           # deterministic
    assert abs(fit_temperature(z, labels) - 1.0) < 0.1                      # calibrated data: T stays near 1
    assert fit_temperature(z * 1000, labels, max_pixels=5000) == pytest.approx(20.0)   # bounded: T = 1000 wanted
    with pytest.raises(PixelsegError, match="ignore index"):
        fit_temperature(z, torch.full_like(labels, 255))
    bad = labels.clone()
    bad[0, 10, 10] = 9
    with pytest.raises(PixelsegError, match=r"\[9\]"):
        fit_temperature(z, bad)


def test_reliability_data_by_hand():
    z, labels = calibrated_data(seed=1, n=2)
    probs = torch.softmax(z * 3, 1)
    data = reliability_diagram_data(probs, labels)
    keep = labels != 255
    conf, pred = probs.max(1)
    conf, right = conf[keep].double().numpy(), (pred == labels)[keep].numpy()
    ece = 0.0
    for b in range(15):                                   # bin b holds b/15 <= confidence < (b+1)/15
        lo, hi = b / 15, (b + 1) / 15
        inside = (conf >= lo) & ((conf < hi) if b < 14 else (conf <= 1.0))
        assert data["count"][b] == inside.sum()
        if inside.any():
            assert data["confidence"][b] == pytest.approx(conf[inside].mean())
            assert data["accuracy"][b] == pytest.approx(right[inside].mean())
            ece += inside.sum() / len(conf) * abs(conf[inside].mean() - right[inside].mean())
        else:
            assert data["confidence"][b] is None and data["accuracy"][b] is None
    assert data["ece"] == pytest.approx(ece) and data["pixels"] == int(keep.sum())
    assert data["edges"][0] == 0.0 and data["edges"][-1] == 1.0 and len(data["edges"]) == 16
    assert math.isnan(expected_calibration_error(probs, torch.full_like(labels, 255)))


def test_uncertainty_scores():
    sure = (np.full((4, 4), 0.99), np.zeros((4, 4)))
    unsure = (np.full((2, 3), 0.3), np.full((2, 3), 0.9))
    mixed = (np.array([[0.9, 0.4]]), np.array([[0.1, 0.7]]))
    for kind in ("entropy", "low_confidence", "margin"):
        s = image_uncertainty_scores([sure, unsure, mixed], kind=kind)
        assert s[0] < s[2] < s[1], kind
    np.testing.assert_allclose(image_uncertainty_scores([mixed], "low_confidence"), [0.5])
    with pytest.raises(PixelsegError, match="entropy"):
        image_uncertainty_scores([sure], kind="bald")


def test_rarity_weights_favour_what_the_labels_hold_little_of():
    w = rarity_weights([9000, 1000, 1000, 10, 0])
    assert w[3] > w[1] == w[2] > w[0]             # the rarer a class's pixels, the more it weighs
    assert w[1] == pytest.approx(1.0)             # the median class weighs 1
    assert w[4] == 10.0 and w[3] == 10.0          # never labelled, or 100x below the median: the cap
    np.testing.assert_array_equal(rarity_weights([0, 0, 0]), [1.0, 1.0, 1.0])


def test_balanced_entropy_counts_doubt_about_a_rare_class_more():
    ent = np.full((4, 4), 0.5)
    common = np.zeros((3, 4, 4))
    common[[0, 1]] = 0.5                          # unsure between the two common classes
    rare = np.zeros((3, 4, 4))
    rare[[0, 2]] = 0.5                            # unsure between a common class and the rare one, as much
    w = rarity_weights([5000, 5000, 50])
    assert balanced_entropy(rare, ent, w) > balanced_entropy(common, ent, w)
    assert balanced_entropy(rare, ent, np.ones(3)) == pytest.approx(ent.mean())   # equal weights: mean entropy
    assert balanced_entropy(np.zeros((3, 0, 0)), np.zeros((0, 0)), w) == 0.0


def near_duplicates_and_distinct(seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((3, 32, 32))
    images = [base + rng.normal(0, 0.01, base.shape) for _ in range(10)]       # one hard frame, ten times
    images += [rng.random((3, 32, 32)) ** rng.uniform(0.3, 3) for _ in range(10)]
    feats = np.stack([pooled_features(im) for im in images])
    scores = np.concatenate([0.8 + rng.uniform(0, 0.01, 10), rng.uniform(0.5, 0.7, 10)])
    return scores, feats


def test_select_diverse_does_not_pick_only_near_duplicates():
    scores, feats = near_duplicates_and_distinct()
    top = select_diverse(scores, None, k=5)
    assert all(i < 10 for i in top)                     # uncertainty alone takes five copies of one frame
    picked = select_diverse(scores, feats, k=5, seed=0)
    assert len(set(picked)) == 5
    assert picked[0] == int(np.argmax(scores))          # the most uncertain first
    assert sum(i < 10 for i in picked) == 1             # then not another copy of it
    assert select_diverse(scores, feats, k=5, seed=0) == picked


def test_select_diverse_is_deterministic_for_a_seed_and_handles_edges():
    scores = np.full(30, 0.5)                            # all tied: the seed decides, reproducibly
    feats = np.random.default_rng(1).random((30, 8))
    a = select_diverse(scores, feats, k=6, seed=3)
    assert a == select_diverse(scores, feats, k=6, seed=3)
    assert a != select_diverse(scores, feats, k=6, seed=4)
    assert select_diverse(scores, None, k=3, seed=3) == select_diverse(scores, None, k=3, seed=3)
    assert select_diverse(scores[:2], feats[:2], k=5) in ([0, 1], [1, 0])   # k larger than the pool
    assert select_diverse([], None, k=3) == []
    with pytest.raises(ValueError, match="NaN"):
        select_diverse([0.1, float("nan")], None, k=1)
