"""pixelseg.models.outputs.confidence_maps: per-pixel confidence (the top probability) and normalized entropy,
from logits or probabilities, softmax or one sigmoid channel."""
import math

import numpy as np
import pytest
import torch

from pixelseg.errors import PixelsegError
from pixelseg.models.outputs import confidence_maps


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
