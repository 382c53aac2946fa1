"""pixelseg.measure.calibration: temperature scaling finds an over-confident model's temperature from the data;
the reliability diagram's bins and ECE match a count by hand."""
import math

import pytest
import torch

from pixelseg.errors import PixelsegError
from pixelseg.measure.calibration import expected_calibration_error, fit_temperature, reliability_diagram_data


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
