"""Paired transforms (every preset keeps masks exact and aligned with the image) and the torch datasets."""
from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from pixelseg.data.dataset import EvalDataset, SegDataset, eval_collate
from pixelseg.data.index import Sample
from pixelseg.data.transforms import PRESETS, eval_transform, train_transform
from pixelseg.errors import PixelsegError

IGN = 255
SEEDS = range(12)


def _block_mask(h=67, w=101, values=(0, 3, 7), cell=17, dtype=np.uint8) -> np.ndarray:
    """Asymmetric blocks of classes (so a flip of one but not the other would show)."""
    ys, xs = np.mgrid[0:h, 0:w]
    k = (ys // cell) * 5 + (xs // cell) + (xs > w * 0.7)
    return np.asarray(values, dtype)[k % len(values)]


def _geometric_only(tf: A.Compose) -> A.Compose:
    """The preset without its image-only (photometric/noise/blur) ops, so pixel values can be compared."""
    return A.Compose([t for t in tf.transforms if isinstance(t, A.DualTransform)])


def _interior(mask: np.ndarray, r: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood holds a single mask value (far from any boundary, the image
    border included: a rotation blends the image's border pixels with the fill)."""
    h, w = mask.shape
    p = np.pad(mask.astype(np.int32), r, constant_values=-1)
    same = np.ones((h, w), bool)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            same &= p[dy:dy + h, dx:dx + w] == mask
    return same


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_mask_values_stay_from_the_original_set(preset, dtype):
    mask = _block_mask(values=(0, 3, 300) if dtype == np.uint16 else (0, 3, 7), dtype=dtype)
    allowed = set(np.unique(mask).tolist()) | {IGN}
    img = np.random.default_rng(0).integers(0, 256, (*mask.shape, 3), dtype=np.uint8)
    tf = train_transform((48, 72), preset, IGN, 3)
    saw_ignore = False
    for seed in SEEDS:
        tf.set_random_seed(seed)
        out = tf(image=img, mask=mask)["mask"]
        assert np.issubdtype(out.dtype, np.integer)
        vals = set(np.unique(out).tolist())
        assert vals <= allowed, f"{preset}: interpolated mask values {vals - allowed}"
        saw_ignore |= IGN in vals
    # scale jitter below 1 pads with the ignore index; the resize-only presets never add it
    assert saw_ignore == (preset not in ("none", "light"))


def test_scale_jitter_padding_is_ignore_in_mask_and_zero_in_image():
    mask = _block_mask(values=(0, 1, 2))
    img = np.repeat((mask * 40 + 40)[:, :, None], 3, axis=2).astype(np.uint8)  # no zero pixel in the input
    geo = _geometric_only(train_transform((48, 72), "default", IGN, 3))
    padded = 0
    for seed in range(20):
        geo.set_random_seed(seed)
        out = geo(image=img, mask=mask)
        pad_mask, pad_img = out["mask"] == IGN, out["image"][:, :, 0] == 0
        np.testing.assert_array_equal(pad_mask, pad_img)
        padded += int(pad_mask.any())
    assert padded > 0


@pytest.mark.parametrize("preset", PRESETS)
def test_geometry_keeps_image_and_mask_aligned(preset):
    mask = _block_mask(values=(0, 1, 2, 3, 4))
    img = np.repeat((mask * 40)[:, :, None], 3, axis=2).astype(np.uint8)
    tf = train_transform((48, 72), preset, IGN, 3)
    geo = _geometric_only(tf)
    if preset in ("none", "light"):
        assert len(geo.transforms) == len(tf.transforms)   # nothing photometric was stripped
    flipped = 0
    for seed in SEEDS:
        geo.set_random_seed(seed)
        out = geo(image=img, mask=mask)
        m, x = out["mask"].astype(np.int32), out["image"].astype(np.int32)
        expected = np.where(m == IGN, 0, m * 40)
        inner = _interior(m, r=3)   # chained linear resizes blur the image's edges over a few pixels
        assert inner.mean() > 0.1
        for c in range(3):
            diff = np.abs(x[:, :, c] - expected)[inner]
            assert diff.max() <= 2, f"{preset} seed {seed}: image and mask disagree by {diff.max()}"
        # the top-left block is class 0 unflipped; flips must show in both (checked above) and happen at all
        flipped += int(m[2, 2] != 0 and m[2, 2] != IGN)
    if preset != "none":
        assert flipped > 0


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("in_hw, out_hw", [((37, 101), (48, 72)), ((37, 101), (50, 150)), ((61, 45), (20, 37))])
def test_resize_puts_mask_edges_where_the_image_edges_are(axis, in_hw, out_hw):
    """Sub-pixel alignment: each resized mask pixel holds the class its (linearly resized) image pixel is
    closest to. Stripes step by one class, so "closest" means within half a step of the class value."""
    n = in_hw[axis]
    tri = np.array([0, 1, 2, 3, 4, 3, 2, 1])
    line = tri[(np.arange(n) // 7) % len(tri)].astype(np.uint8)
    mask = np.broadcast_to(line[:, None] if axis == 0 else line[None, :], in_hw).copy()
    img = np.repeat((mask * 40)[:, :, None], 3, axis=2).astype(np.uint8)
    out = train_transform(out_hw, "none", IGN, 3)(image=img, mask=mask)
    diff = np.abs(out["image"][:, :, 0].astype(int) - out["mask"].astype(int) * 40)
    assert diff.max() <= 20, f"mask edge off by a pixel at {np.argwhere(diff > 20)[:3].tolist()}"


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("in_hw", [(30, 50), (10, 12)])
def test_output_size_and_channels(preset, channels, in_hw):
    img = np.random.default_rng(1).integers(0, 256, (*in_hw, channels), dtype=np.uint8)
    mask = np.random.default_rng(2).integers(0, 3, in_hw, dtype=np.uint8)
    tf = train_transform((24, 40), preset, IGN, channels)
    for seed in range(4):
        tf.set_random_seed(seed)
        out = tf(image=img, mask=mask)
        assert out["image"].shape == (24, 40, channels) and out["image"].dtype == np.uint8
        assert out["mask"].shape == (24, 40)


def test_eval_transform_resizes_the_image_only():
    img = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    tf = eval_transform((24, 40))
    a = tf(image=img)["image"]
    assert a.shape == (24, 40, 3)
    np.testing.assert_array_equal(tf(image=img)["image"], a)   # deterministic
    assert not any(isinstance(t, A.DualTransform) and not isinstance(t, A.Resize) for t in tf.transforms)


def test_unknown_preset():
    with pytest.raises(PixelsegError) as ei:
        train_transform((8, 8), "extreme")
    assert "extreme" in str(ei.value) and "default" in str(ei.value)


# ---------------------------------------------------------------- datasets

MEAN, STD = (10.0, 20.0, 30.0), (2.0, 4.0, 5.0)


def _sample(tmp_path, name, color=(100, 150, 200), img_hw=(20, 30), mask=None):
    ip, mp = tmp_path / f"{name}.png", tmp_path / f"{name}_m.png"
    Image.fromarray(np.full((*img_hw, 3), color, np.uint8)).save(ip)
    mask = _block_mask(*img_hw, values=(0, 1, 2), cell=5) if mask is None else mask
    Image.fromarray(mask).save(mp)
    return Sample(ip, mp, name), mask


def test_seg_dataset_returns_normalized_float_and_long_mask(tmp_path):
    s, mask = _sample(tmp_path, "a")
    ds = SegDataset([s], 3, IGN, 3, MEAN, STD, train_transform((16, 24), "none", IGN, 3))
    assert len(ds) == 1
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 16, 24)
    for c, v in enumerate((100, 150, 200)):
        torch.testing.assert_close(x[c], torch.full((16, 24), (v - MEAN[c]) / STD[c]))
    assert y.dtype == torch.int64 and y.shape == (16, 24)
    assert set(y.unique().tolist()) <= {0, 1, 2}


def test_seg_dataset_converts_channels(tmp_path):
    s, _ = _sample(tmp_path, "a", color=(90, 90, 90))
    x, _ = SegDataset([s], 3, IGN, 1, (0.0,), (1.0,), train_transform((8, 8), "default", IGN, 1))[0]
    assert x.shape == (1, 8, 8)


def test_seg_dataset_rejects_out_of_range_mask_values(tmp_path):
    m = _block_mask(20, 30, values=(0, 1, 5), cell=5)
    s, _ = _sample(tmp_path, "bad", mask=m)
    ds = SegDataset([s], 3, IGN, 3, MEAN, STD, train_transform((16, 24), "none"))
    with pytest.raises(PixelsegError) as ei:
        ds[0]
    msg = str(ei.value)
    assert str(s.mask) in msg and "[5]" in msg and "classes.json" in msg


def test_seg_dataset_rejects_size_mismatch(tmp_path):
    s, _ = _sample(tmp_path, "off", mask=np.zeros((10, 10), np.uint8))
    ds = SegDataset([s], 3, IGN, 3, MEAN, STD, train_transform((16, 24), "none"))
    with pytest.raises(PixelsegError) as ei:
        ds[0]
    msg = str(ei.value)
    assert str(s.mask) in msg and "10x10" in msg and "30x20" in msg


def test_eval_dataset_keeps_the_mask_at_original_resolution(tmp_path):
    s0, m0 = _sample(tmp_path, "a", img_hw=(20, 30))
    s1, m1 = _sample(tmp_path, "b", img_hw=(12, 18))
    ds = EvalDataset([s0, s1], 3, IGN, 3, MEAN, STD, eval_transform((16, 24)))
    x, y, i = ds[0]
    assert x.shape == (3, 16, 24) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.shape == (20, 30) and i == 0
    np.testing.assert_array_equal(y.numpy(), m0)
    xs, masks, idx = eval_collate([ds[0], ds[1]])
    assert xs.shape == (2, 3, 16, 24) and idx == [0, 1]
    assert [tuple(m.shape) for m in masks] == [(20, 30), (12, 18)]
    np.testing.assert_array_equal(masks[1].numpy(), m1)
