"""pixelseg.quality.ranking: image uncertainty scores, class rarity weights and the diverse selection that
`pixelseg suggest` ranks unlabelled images with."""
import numpy as np
import pytest

from pixelseg.errors import PixelsegError
from pixelseg.quality.ranking import (
    balanced_entropy,
    image_uncertainty_scores,
    pooled_features,
    rarity_weights,
    select_diverse,
)


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
