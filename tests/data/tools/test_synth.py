"""The built-in synthetic dataset: deterministic, exactly labelled, and not solvable by color alone."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from pixelseg.data.tools import synth
from pixelseg.data.classes import ClassTable
from pixelseg.errors import PixelsegError


def _scene(i, size=(64, 64), seed=0, **kw):
    return synth.make_scene(np.random.default_rng(np.random.SeedSequence([seed, 0, i])), size, **kw)


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    summary = synth.generate(out, n_train=12, n_val=5, size=(48, 64), seed=3)
    return out, summary


def test_constants_and_classes_json(small_set):
    out, summary = small_set
    assert len(synth.CLASS_NAMES) == len(synth.CLASS_COLORS) == 6
    assert synth.CLASS_COLORS[0] == (0, 0, 0)
    assert len(set(synth.CLASS_COLORS)) == 6
    d = json.loads((out / "classes.json").read_text())
    assert d == {"names": list(synth.CLASS_NAMES), "colors": [list(c) for c in synth.CLASS_COLORS],
                 "ignore_index": 255}
    assert ClassTable.from_dict(d).num_classes == 6


def test_folder_layout_pairs_and_values(small_set):
    out, summary = small_set
    for split, n in (("train", 12), ("val", 5)):
        imgs = sorted(p.name for p in (out / split / "images").iterdir())
        masks = sorted(p.name for p in (out / split / "masks").iterdir())
        assert imgs == masks == [f"{split}_{i:05d}.png" for i in range(n)]
        for name in imgs:
            im = Image.open(out / split / "images" / name)
            m = Image.open(out / split / "masks" / name)
            assert im.mode == "RGB" and m.mode == "L"
            assert im.size == m.size == (64, 48)  # PIL size is (W, H)
            assert np.asarray(m).max() <= 5
    assert summary["counts"] == {"train": 12, "val": 5}
    assert summary["size"] == [48, 64]
    for split in ("train", "val"):
        fr = summary["class_fraction"][split]
        assert list(fr) == list(synth.CLASS_NAMES)
        assert sum(fr.values()) == pytest.approx(1.0)
        assert 0.2 < fr["background"] < 0.98
    # the files on disk are what make_scene returns for that seed sequence
    rng = np.random.default_rng(np.random.SeedSequence([3, 1, 4]))
    img, mask = synth.make_scene(rng, (48, 64))
    assert np.array_equal(np.asarray(Image.open(out / "val/images/val_00004.png")), img)
    assert np.array_equal(np.asarray(Image.open(out / "val/masks/val_00004.png")), mask)


def test_deterministic_and_independent_of_workers(tmp_path, small_set):
    out, _ = small_set
    synth.generate(tmp_path / "a", n_train=12, n_val=5, size=(48, 64), seed=3, workers=2)
    a = _tree_bytes(out)
    b = _tree_bytes(tmp_path / "a")
    assert a.keys() == b.keys() and a == b
    synth.generate(tmp_path / "c", n_train=12, n_val=5, size=(48, 64), seed=4)
    c = _tree_bytes(tmp_path / "c")
    assert c.keys() == a.keys()
    differing = [k for k in a if k.endswith(".png") and a[k] != c[k]]
    assert len(differing) == 34  # every image and every mask differs with another seed


def test_rerun_into_smaller_set_removes_stale_samples(tmp_path):
    synth.generate(tmp_path, n_train=4, n_val=2, size=(32, 32))
    synth.generate(tmp_path, n_train=2, n_val=1, size=(32, 32))
    assert sorted(p.name for p in (tmp_path / "train/masks").iterdir()) == ["train_00000.png", "train_00001.png"]
    assert sorted(p.name for p in (tmp_path / "val/images").iterdir()) == ["val_00000.png"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_non_square_size_and_object_counts():
    for i in range(20):
        img, mask = _scene(i, size=(40, 72), min_objects=1, max_objects=2)
        assert img.shape == (40, 72, 3) and img.dtype == np.uint8
        assert mask.shape == (40, 72) and mask.dtype == np.uint8
        present = set(np.unique(mask)) - {0}
        assert 1 <= len(present) <= 2
    for i in range(5):
        _, mask = _scene(i, min_objects=0, max_objects=0)
        assert not mask.any()
    many = [len(set(np.unique(_scene(i, min_objects=5, max_objects=5)[1])) - {0}) for i in range(20)]
    few = [len(set(np.unique(_scene(i, min_objects=1, max_objects=1)[1])) - {0}) for i in range(20)]
    assert max(few) == 1 and np.mean(many) > 2.5


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(PixelsegError, match="min_objects"):
        _scene(0, min_objects=4, max_objects=2)
    with pytest.raises(PixelsegError, match="too small"):
        _scene(0, size=(8, 64))
    with pytest.raises(PixelsegError, match="n_train"):
        synth.generate(tmp_path, n_train=-1)


@pytest.fixture(scope="module")
def scenes():
    return [_scene(i, size=(96, 96), seed=7) for i in range(80)]


def test_every_class_appears_often(scenes):
    per_class = np.zeros(6, int)
    for _, mask in scenes:
        per_class[np.unique(mask)] += 1
    assert per_class[0] == len(scenes)
    assert per_class[1:].min() >= 25, per_class  # 80 scenes x ~3.5 objects / 5 classes


def test_color_is_not_a_shortcut():
    per_class = {c: [] for c in range(1, 6)}
    hue_hist = np.zeros((6, 6))
    for i in range(200):
        img, mask = _scene(i, size=(64, 64), seed=11)
        hue = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 0]  # 0..179
        for c in np.unique(mask)[1:]:
            per_class[c].append(img[mask == c].astype(np.float64).mean(0))
            hue_hist[c] += np.bincount(hue[mask == c] // 30, minlength=6)[:6]
    means = np.array([np.mean(per_class[c], 0) for c in range(1, 6)])
    assert np.ptp(means, axis=0).max() < 30, means
    # every object class shows up in every hue sextant: no class owns a color
    assert (hue_hist[1:] / hue_hist[1:].sum(1, keepdims=True) > 0.05).all(), hue_hist


def test_background_is_textured_and_objects_are_visible(scenes):
    stds, contrasts = [], []
    for img, mask in scenes:
        bg = img[mask == 0].astype(np.float64)
        stds.append(bg.std(0).mean())
        # object pixels differ from the background they sit on
        for c in np.unique(mask)[1:]:
            contrasts.append(np.abs(img[mask == c].astype(float).mean(0) - bg.mean(0)).max())
    assert np.median(stds) > 12 and min(stds) > 4, sorted(stds)[:5]
    assert np.median(contrasts) > 30


def test_objects_overlap_but_stay_visible():
    """Later objects occlude earlier ones, yet every object keeps at least half of its pixels."""
    occluded = 0
    for i in range(40):
        rng = np.random.default_rng(np.random.SeedSequence([5, 0, i]))
        _, mask, inst, areas = synth._compose(rng, (96, 96), 4, 5)
        visible = np.bincount(inst.ravel(), minlength=len(areas))
        for k in range(1, len(areas)):
            assert visible[k] >= 0.5 * areas[k]
            assert len(np.unique(mask[inst == k])) == 1  # one object, one class
        occluded += bool((visible[1:] < np.asarray(areas[1:])).any())
        assert (mask > 0).sum() == (inst > 0).sum()
    assert occluded >= 10, occluded
