"""Sliding window and test-time augmentation: the geometry is exact, the blending leaves no seams."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelseg.inference.tta import TTA
from pixelseg.inference.predictor import Predictor
from pixelseg.inference.tiling import sliding_window_bands
from pixelseg.models.windows import gaussian_weights, starts


@pytest.fixture(scope="module")
def plain(random_run):
    return Predictor(random_run, "cpu")


def test_window_offsets_cover_the_image():
    assert starts(64, 64, 48) == [0]
    assert starts(50, 64, 48) == [0]
    assert starts(200, 64, 48) == [0, 48, 96, 136]       # the last window is flush with the end
    for length, win, stride in [(1000, 96, 72), (97, 32, 8), (65, 64, 1)]:
        s = starts(length, win, stride)
        assert s[0] == 0 and s[-1] + win == length and all(b - a <= stride for a, b in zip(s, s[1:]))


def test_window_covering_the_image_equals_whole_image(random_run, plain, scene):
    tiled = Predictor(random_run, "cpu", tile=True)     # window = training size = this image's size
    assert tiled.tile == (64, 64)
    np.testing.assert_allclose(tiled.probs([scene])[0], plain.probs([scene])[0], atol=1e-5)
    assert np.array_equal(tiled.predict(scene), plain.predict(scene))


def test_bands_are_bounded_by_the_window_and_cover_every_row(plain):
    image = np.random.default_rng(0).integers(0, 255, (100, 60, 3), dtype=np.uint8)
    pre = plain.info.preprocessing
    bands = list(sliding_window_bands(image, plain._probs, pre, 3, (40, 48), overlap=0.25, batch_size=2))
    rows = [y for y0, y1, _ in bands for y in range(y0, y1)]
    assert rows == list(range(100)) and len(bands) == 3
    for y0, y1, p in bands:
        assert p.shape == (3, y1 - y0, 60) and y1 - y0 <= 40
        torch.testing.assert_close(p.sum(0), torch.ones(y1 - y0, 60))   # blended probabilities stay normalized
    # labels from bands equal the argmax of the full probability map the API returns
    tiled = Predictor(plain.info.path, "cpu", tile=(40, 48))
    assert np.array_equal(tiled.predict(image), tiled.probs([image])[0].argmax(0))


def _seam_ratio(probs: torch.Tensor, borders: list[int]) -> float:
    """How much larger the column-to-column change is at window borders than elsewhere."""
    jump = (probs[:, :, 1:] - probs[:, :, :-1]).abs().sum(0).mean(0)       # per column boundary
    at = jump[[b - 1 for b in borders]].mean()
    return float(at / jump.median())


def test_gaussian_blending_is_seamless_on_stripes(plain):
    """Horizontal stripes are the same in every column: any column-to-column jump in the prediction is
    an artefact. With no overlap and plain averaging the window borders show; blended, they do not."""
    h, w, win = 64, 224, 64
    stripes = np.zeros((h, w, 3), np.uint8)
    stripes[(np.arange(h) // 8) % 2 == 1] = (230, 230, 230)
    pre = plain.info.preprocessing

    def probs(overlap, blend):
        return torch.cat([p for *_, p in sliding_window_bands(stripes, plain._probs, pre, 3, (win, win), overlap,
                                                              blend=blend)], 1)
    naive_borders = [x for x in starts(w, win, win)[1:]]
    naive = _seam_ratio(probs(0.0, "uniform"), naive_borders)
    blended = probs(0.5, "gaussian")
    offsets = starts(w, win, win // 2)
    borders = sorted({x for s in offsets for x in (s, s + win) if 0 < x < w})
    seams = _seam_ratio(blended, borders)
    print(f"seam ratio: naive {naive:.2f}, blended {seams:.2f}")
    assert naive > 5.0                               # the check can see seams ...
    assert seams < 2.5 and seams < naive / 4         # ... and the blended map has none


def test_gaussian_weights_peak_in_the_centre():
    g = gaussian_weights(33, 20)
    assert g.shape == (33, 20) and float(g.max()) == pytest.approx(1.0, abs=1e-3)
    assert float(g[16, 10]) > float(g[0, 0]) > 0


def test_tta_flip_symmetry(random_run, scene):
    tta = Predictor(random_run, "cpu", tta=TTA(flip=True, scales=(0.75, 1.0, 1.25)))
    p = tta.probs([scene])[0]
    p_flipped = tta.probs([np.ascontiguousarray(scene[:, ::-1])])[0]
    np.testing.assert_allclose(p_flipped, p[:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)


def test_tta_views_are_averaged(random_run, plain, scene):
    one = Predictor(random_run, "cpu", tta=TTA(flip=False, scales=(1.0,)))
    np.testing.assert_allclose(one.probs([scene])[0], plain.probs([scene])[0], atol=1e-5)
    flip = Predictor(random_run, "cpu", tta=TTA(flip=True))
    mirrored = plain.probs([np.ascontiguousarray(scene[:, ::-1])])[0][:, :, ::-1]
    want = (plain.probs([scene])[0] + mirrored) / 2
    np.testing.assert_allclose(flip.probs([scene])[0], want, atol=1e-4)


def test_tta_and_tiling_compose_on_onnxruntime(random_run, scene):
    both = Predictor(random_run, "cpu", backend="onnxruntime", tile=(40, 40), overlap=0.25, tta=TTA(True, (1.0, 1.5)))
    ref = Predictor(random_run, "cpu", tile=(40, 40), overlap=0.25, tta=TTA(True, (1.0, 1.5)))
    np.testing.assert_allclose(both.probs([scene])[0], ref.probs([scene])[0], atol=1e-4)
