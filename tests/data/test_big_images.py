"""Big images at their own scale: crops, padding, the decoded-image cache, object sizes, the config keys."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pixelseg.config import from_dict
from pixelseg.data import cache
from pixelseg.data.crops import CropTransform, ScaleImage, scaled_size
from pixelseg.data.objects import object_sizes
from pixelseg.data.transforms import train_transform
from pixelseg.errors import PixelsegError

import albumentations as A


def _square_scene(size=400, side=40, at=(180, 200)):
    image = np.full((size, size, 3), 30, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    y, x = at
    image[y:y + side, x:x + side] = 220
    mask[y:y + side, x:x + side] = 1
    mask[0:4, 0:4] = 2              # a second class, so the dominant one (0) is not the only other
    return image, mask


def _extent(mask, cls):
    ys, xs = np.nonzero(mask == cls)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


@pytest.mark.parametrize("scale, expect", [(1.0, 40), (0.5, 20)])
def test_crops_keep_the_pixel_size_at_scale_1_and_halve_it_at_half(scale, expect):
    image, mask = _square_scene()
    # focus 1: every crop is centred near a non-dominant class pixel; the window is large enough for the square
    t = CropTransform((160, 160), scale, (1.0, 1.0), 255, A.Compose([]), focus=1.0)
    seen = 0
    for seed in range(12):
        t.set_random_seed(seed)
        out = t(image=image, mask=mask)
        assert out["image"].shape == (160, 160, 3) and out["mask"].shape == (160, 160)
        m = out["mask"]
        if (m == 1).any() and not (m[0] == 1).any() and not (m[-1] == 1).any() \
                and not (m[:, 0] == 1).any() and not (m[:, -1] == 1).any():
            assert _extent(m, 1) == (expect, expect)
            seen += 1
    assert seen >= 3


def test_padding_is_the_ignore_index():
    image = np.full((50, 60, 3), 200, np.uint8)
    mask = np.ones((50, 60), np.uint8)
    t = train_transform((128, 128), "none", 250, 3, scale=1.0, focus=0.0)
    t.set_random_seed(0)
    out = t(image=image, mask=mask)
    assert out["mask"].shape == (128, 128)
    assert (out["mask"] == 1).sum() == 50 * 60               # the whole image, at scale 1
    assert set(np.unique(out["mask"])) == {1, 250}
    assert (out["image"][out["mask"] == 250] == 0).all()


def test_crop_sampling_is_seeded_and_jitters_the_scale():
    image, mask = _square_scene(800)
    t = train_transform((128, 128), "light", 255, 3, scale=0.5)
    t.set_random_seed(3)
    a = t(image=image, mask=mask)
    t.set_random_seed(3)
    b = t(image=image, mask=mask)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])
    windows = set()
    for s in range(20):
        t.set_random_seed(s)
        windows.add(t.window(mask)[2])
    assert min(windows) >= round(128 / 0.75) and max(windows) <= round(128 / 0.375) and len(windows) > 3


def test_class_aware_crops_find_a_small_rare_object_more_often():
    image, mask = _square_scene(1200, side=24, at=(700, 300))

    def hits(focus):
        t = CropTransform((128, 128), 1.0, (1.0, 1.0), 255, A.Compose([]), focus=focus)
        n = 0
        for s in range(60):
            t.set_random_seed(s)
            n += bool((t(image=image, mask=mask)["mask"] == 1).any())
        return n
    assert hits(0.5) > 3 * max(1, hits(0.0))


def test_scaled_evaluation_input_is_a_multiple_of_32():
    assert scaled_size((1024, 2048), 0.5) == (512, 1024)
    assert scaled_size((100, 70), 1.0) == (96, 64)
    out = ScaleImage(0.5)(image=np.zeros((1000, 600, 3), np.uint8))["image"]
    assert out.shape == (512, 288, 3)


def test_cache_decodes_once_and_notices_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "MIN_PIXELS", 16)
    src = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(src)
    calls = []

    def decode():
        calls.append(1)
        return np.asarray(Image.open(src))
    first = cache.cached(src, "image3", decode)
    again = cache.cached(src, "image3", decode)
    assert len(calls) == 1 and isinstance(again, np.memmap) and np.array_equal(first, again)
    keyed = []
    monkeypatch.setattr(cache, "cache_key", lambda *a: keyed.append(a) or "never")
    assert cache.cached(src, "image3", decode) is again and not keyed    # remembered: one stat, no hash, no header
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npy"))) == 1   # no temporary file left behind
    monkeypatch.undo()
    monkeypatch.setenv("PIXELSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "MIN_PIXELS", 16)
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(src)
    os.utime(src, ns=(1, 10**18))
    assert int(cache.cached(src, "image3", decode)[0, 0, 0]) == 9 and len(calls) == 2


def test_object_sizes_per_class():
    m = np.zeros((200, 200), np.uint8)
    for i, side in enumerate((10, 20, 30, 40, 50)):
        m[i * 40:i * 40 + min(side, 38), 0:side] = 1
    m[150:160, 150:190] = 2
    s = object_sizes([m], 3)
    assert s.background == 0 and s.counts[1] == 5 and s.counts[2] == 1
    assert s.median[1] == 30 and s.median[2] == 40
    assert s.small_common() == pytest.approx(np.median([s.p10[1], 40]))


def test_scale_and_crop_config_keys():
    cfg = from_dict({"data": {"scale": 0.5, "crop": 512}})
    assert cfg.data.scale == 0.5 and cfg.data.crop == (512, 512)
    assert from_dict(cfg.to_dict()) == cfg
    with pytest.raises(PixelsegError, match="data.scale"):
        from_dict({"data": {"scale": 0}})


def test_a_memory_mapped_mask_is_scanned_once_and_crops_do_not_depend_on_it(tmp_path):
    """Crop centring remembers a cached (memory-mapped) mask's class positions by file; a transform that
    scanned it before and a fresh one (a resumed run) draw the same crops from the same seeds."""
    image, mask = _square_scene(1200, side=24, at=(700, 300))
    np.save(tmp_path / "m.npy", mask)
    mm = np.load(tmp_path / "m.npy", mmap_mode="r")
    warm = CropTransform((128, 128), 1.0, (1.0, 1.0), 255, A.Compose([]), focus=1.0)
    for s in range(5):
        warm.set_random_seed(s)
        warm(image=image, mask=mm)
    assert list(warm._scanned) == [mm.filename]
    fresh = CropTransform((128, 128), 1.0, (1.0, 1.0), 255, A.Compose([]), focus=1.0)
    plain = CropTransform((128, 128), 1.0, (1.0, 1.0), 255, A.Compose([]), focus=1.0)
    found = 0
    for s in range(10, 30):
        outs = []
        for t, m in ((warm, mm), (fresh, mm), (plain, mask)):
            t.set_random_seed(s)
            outs.append(t(image=image, mask=m)["mask"])
        assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
        found += bool((outs[0] == 1).any())
    assert found >= 5                  # centred on the small object (else on the corner class) about half the time
    assert not plain._scanned                            # an in-memory mask is not remembered
