import json
import re

import numpy as np
import pytest

from pixelseg.measure.metrics import iou, mean_iou, pixel_accuracy
from pixelseg.measure.stats import bootstrap_ci, paired_bootstrap, resample_counts, verdict

K = 5
PIXELS = np.array([3000, 2000, 1000, 600, 300])        # mean ground-truth pixels per image and class
RIGHT = np.array([0.9, 0.75, 0.6, 0.5, 0.4])            # mean share of a class's pixels predicted right


def draw_images(rng, n, right=RIGHT, gt=None):
    """N per-image confusion matrices from a known generator: each image has its own difficulty (the
    share predicted right is Beta-distributed around RIGHT), wrong pixels go uniformly to the other
    classes. Returns (mats, gt counts) so a second model can be drawn on the same images."""
    if gt is None:
        gt = rng.poisson(PIXELS, size=(n, K))
    mats = np.zeros((n, K, K), np.int64)
    for c in range(K):
        rate = rng.beta(4 * right[c], 4 * (1 - right[c]), size=n)   # concentration 4: images differ a lot
        tp = rng.binomial(gt[:, c], rate)
        mats[:, c, c] = tp
        others = [j for j in range(K) if j != c]
        mats[:, c, others] = rng.multinomial(gt[:, c] - tp, np.full(K - 1, 1 / (K - 1)))
    return mats, gt


def true_miou(right=RIGHT) -> float:
    """mIoU of the expected confusion matrix: what the aggregate mIoU of ever more images tends to."""
    expected = PIXELS[:, None] * np.where(np.eye(K, dtype=bool), right[:, None], (1 - right[:, None]) / (K - 1))
    return mean_iou(expected)


@pytest.mark.slow
def test_interval_covers_the_truth_at_the_stated_rate():
    rng = np.random.default_rng(0)
    truth = true_miou()
    hits, widths = 0, []
    for rep in range(200):
        mats, _ = draw_images(rng, 60)
        r = bootstrap_ci(mats, n_boot=500, seed=rep)
        hits += r["mIoU"]["low"] <= truth <= r["mIoU"]["high"]
        widths.append(r["mIoU"]["high"] - r["mIoU"]["low"])
    assert 0.90 <= hits / 200 <= 0.99, hits
    assert 0.01 < np.median(widths) < 0.2      # informative: not an interval that covers by being huge


def test_values_are_the_summary_metrics_and_resamples_follow_metrics_py():
    rng = np.random.default_rng(1)
    mats, _ = draw_images(rng, 12)
    r = bootstrap_ci(mats, n_boot=200, seed=3)
    total = mats.sum(0)
    assert r["mIoU"]["value"] == pytest.approx(mean_iou(total))
    assert r["pixel_accuracy"]["value"] == pytest.approx(pixel_accuracy(total))
    np.testing.assert_allclose([c["value"] for c in r["per_class_iou"]], iou(total))
    assert r["mIoU"]["low"] < r["mIoU"]["value"] < r["mIoU"]["high"]
    # the interval's ends are percentiles of the resampled mIoUs computed as metrics.mean_iou would
    counts = resample_counts(12, 200, 3)
    resampled = [mean_iou(np.tensordot(c, mats, 1)) for c in counts]
    assert r["mIoU"]["low"] == pytest.approx(np.percentile(resampled, 2.5))
    assert r["mIoU"]["high"] == pytest.approx(np.percentile(resampled, 97.5))
    assert (r["images"], r["n_boot"], r["level"]) == (12, 200, 0.95)
    json.dumps(r, allow_nan=False)


def test_deterministic_for_a_seed():
    mats, _ = draw_images(np.random.default_rng(2), 20)
    assert bootstrap_ci(mats, seed=7) == bootstrap_ci(mats, seed=7)
    assert bootstrap_ci(mats, seed=7)["mIoU"] != bootstrap_ci(mats, seed=8)["mIoU"]
    b = draw_images(np.random.default_rng(3), 20)[0]
    assert paired_bootstrap(mats, b, seed=7) == paired_bootstrap(mats, b, seed=7)


def test_run_against_itself_is_no_difference():
    mats, _ = draw_images(np.random.default_rng(4), 30)
    r = paired_bootstrap(mats, mats)
    assert (r["mIoU"]["difference"], r["mIoU"]["low"], r["mIoU"]["high"]) == (0.0, 0.0, 0.0)
    assert r["mIoU"]["prob_a_better"] == 0.5                 # convention: a tie counts one half
    assert all(c["prob_a_better"] == 0.5 and c["low"] == c["high"] == 0.0 for c in r["per_class_iou"])
    assert r["verdict"].startswith("no clear difference") and "+0.00 [+0.00, +0.00] mIoU points" in r["verdict"]
    json.dumps(r, allow_nan=False)


def test_clearly_better_model_is_found():
    rng = np.random.default_rng(5)
    a, gt = draw_images(rng, 40)
    b, _ = draw_images(rng, 40, right=RIGHT + 0.05, gt=gt)   # same images, better model
    r = paired_bootstrap(a, b, a_name="baseline", b_name="new")
    assert r["mIoU"]["prob_a_better"] < 0.01 and r["mIoU"]["high"] < 0
    assert re.match(r"new is better than baseline with (over 99\.9|9\d\.\d)% probability; the difference "
                    r"baseline - new is -\d+\.\d\d \[-\d+\.\d\d, -\d+\.\d\d\] mIoU points", r["verdict"]), r["verdict"]
    flipped = paired_bootstrap(b, a)
    assert flipped["mIoU"]["prob_a_better"] > 0.99 and flipped["verdict"].startswith("A is better than B")
    assert flipped["mIoU"]["difference"] == pytest.approx(-r["mIoU"]["difference"])
    # pairing removes what the images share: narrower than the two separate intervals side by side
    sa, sb = bootstrap_ci(a)["mIoU"], bootstrap_ci(b)["mIoU"]
    assert r["mIoU"]["high"] - r["mIoU"]["low"] < (sa["high"] - sa["low"]) + (sb["high"] - sb["low"])


def test_one_image_and_a_class_never_present():
    mats, _ = draw_images(np.random.default_rng(6), 1)
    mats = np.pad(mats, ((0, 0), (0, 1), (0, 1)))           # class 5: in no ground truth and no prediction
    r = bootstrap_ci(mats, n_boot=50)
    assert r["mIoU"]["low"] == r["mIoU"]["high"] == pytest.approx(r["mIoU"]["value"])   # one image: no spread
    assert r["per_class_iou"][5] == {"value": None, "low": None, "high": None}
    assert r["mIoU"]["value"] == pytest.approx(mean_iou(mats[0]))                       # left out of the mean
    p = paired_bootstrap(mats, mats, n_boot=50)
    assert p["per_class_iou"][5] == {"difference": None, "low": None, "high": None, "prob_a_better": None}
    empty = bootstrap_ci(np.zeros((3, 2, 2), np.int64), n_boot=20)                      # all pixels ignored
    assert empty["mIoU"] == {"value": None, "low": None, "high": None}
    assert verdict(paired_bootstrap(np.zeros((3, 2, 2), np.int64), np.zeros((3, 2, 2), np.int64))).startswith(
        "no comparison")


def test_bad_inputs():
    mats, _ = draw_images(np.random.default_rng(7), 3)
    with pytest.raises(ValueError, match="N x K x K"):
        bootstrap_ci(mats[0])
    with pytest.raises(ValueError, match="N x K x K"):
        bootstrap_ci(mats[:0])
    with pytest.raises(ValueError, match="integer"):
        bootstrap_ci(mats.astype(float))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(mats, level=95)
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(mats, mats[:2])
