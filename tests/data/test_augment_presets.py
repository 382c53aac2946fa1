"""The aerial and medical presets and custom albumentations pipelines: what they promise, checked on a
mask-shaped image (each class painted its own color) transformed alongside its mask."""
from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from pixelseg.config import DATA_FORMATS, from_dict
from pixelseg.data.formats import FORMATS
from pixelseg.data.transforms import PRESETS, train_transform
from pixelseg.errors import PixelsegError

IGN = 255
PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30], [30, 200, 200]], np.uint8)


def _scene(h=64, w=64) -> np.ndarray:
    """Asymmetric class blocks: any rotation or flip of one but not the other would show."""
    m = np.zeros((h, w), np.uint8)
    m[: h // 2, : w // 3] = 1
    m[h // 2:, w // 2:] = 2
    m[4:14, w - 14: w - 4] = 3
    m[h - 12:, :8] = 4
    return m


def _interior(mask: np.ndarray, r: int) -> np.ndarray:
    h, w = mask.shape
    p = np.pad(mask.astype(np.int32), r, constant_values=-1)
    same = np.ones((h, w), bool)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            same &= p[dy:dy + h, dx:dx + w] == mask
    return same


def _assert_aligned(out, what: str, r: int = 3) -> None:
    m, x = out["mask"], out["image"].astype(np.int32)
    inner = _interior(m, r) & (m != IGN)
    assert inner.mean() > 0.1, what
    diff = np.abs(x - PALETTE[m.clip(0, len(PALETTE) - 1)].astype(np.int32)).max(axis=2)[inner]
    # classes differ by >= 170 in some channel: a misplaced mask shows as ~170, while a strong elastic stretch
    # lets the image's linear interpolation blend up to a few tens of levels in from a neighbour
    assert diff.max() <= 40, f"{what}: image and mask disagree by {diff.max()}"
    # away from its edge (where the image blends linearly), the ignore padding is black in the image
    pad = _interior(m, r) & (m == IGN)
    assert (x[pad] <= 40).all(), f"{what}: padding is not black in the image where the mask is ignore"


def _geometric(tf: A.Compose) -> A.Compose:
    def keep(t):
        if isinstance(t, (A.OneOf, A.SomeOf)):
            kept = [c for c in t.transforms if isinstance(c, A.DualTransform)]
            return A.OneOf(kept, p=t.p) if kept else None
        return t if isinstance(t, A.DualTransform) else None
    return A.Compose([k for k in (keep(t) for t in tf.transforms) if k is not None])


def test_preset_and_format_names_agree_with_the_config():
    assert tuple(FORMATS) == DATA_FORMATS
    assert {"aerial", "medical"} <= set(PRESETS)
    assert from_dict({"data": {"augment": "aerial", "format": "cityscapes"}}).data.augment == "aerial"
    with pytest.raises(PixelsegError):
        from_dict({"data": {"augment": "underwater"}})


@pytest.mark.parametrize("preset", ["aerial", "medical"])
def test_new_presets_keep_image_and_mask_aligned(preset):
    mask = _scene()
    img = PALETTE[mask]
    geo = _geometric(train_transform((64, 64), preset, IGN, 3))
    for seed in range(16):
        geo.set_random_seed(seed)
        _assert_aligned(geo(image=img, mask=mask), f"{preset} seed {seed}")


def test_aerial_uses_all_eight_orientations_on_square_tiles():
    """A 1-pixel marker in one corner of an otherwise empty tile must visit all 4 corners, and its
    mirror images (transposes) must show too: the D4 group, not only flips."""
    mask = np.zeros((32, 32), np.uint8)
    mask[0:4, 0:10] = 1   # a horizontal bar at the top-left: its orientation tells rotation from flip
    tf = A.Compose([t for t in train_transform((32, 32), "aerial", IGN, 3).transforms if isinstance(t, A.D4)])
    seen = set()
    for seed in range(64):
        tf.set_random_seed(seed)
        m = tf(image=np.zeros((32, 32, 3), np.uint8), mask=mask)["mask"]
        seen.add(m.tobytes())
    assert len(seen) == 8


def test_medical_has_no_flips_and_deforms():
    tf = train_transform((48, 48), "medical", IGN, 1)
    names = {type(t).__name__ for t in tf.transforms} | {type(c).__name__ for t in tf.transforms
                                                         for c in getattr(t, "transforms", [])}
    assert not names & {"HorizontalFlip", "VerticalFlip", "D4"}
    assert {"ElasticTransform", "GridDistortion", "RandomGamma"} <= names
    out = tf(image=np.full((40, 40, 1), 120, np.uint8), mask=np.zeros((40, 40), np.uint8))
    assert out["image"].shape == (48, 48, 1)


def _save(tmp_path, pipeline: A.Compose, name="aug.yaml"):
    p = tmp_path / name
    A.save(pipeline, str(p), data_format="yaml" if name.endswith(".yaml") else "json")
    return p


@pytest.mark.parametrize("name", ["aug.yaml", "aug.json"])
def test_custom_pipeline_from_file_is_aligned_and_sized(tmp_path, name):
    p = _save(tmp_path, A.Compose([
        A.Rotate(limit=30, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGN, mask_interpolation=cv2.INTER_NEAREST, p=1),
        A.RandomCrop(40, 40),   # smaller than the network size: padded back with the ignore index
        A.HorizontalFlip(p=0.5),
    ]), name)
    tf = train_transform((64, 64), str(p), IGN, 3)
    mask = _scene()
    img = PALETTE[mask]
    pads = 0
    for seed in range(8):
        tf.set_random_seed(seed)
        out = tf(image=img, mask=mask)
        assert out["image"].shape == (64, 64, 3) and out["mask"].shape == (64, 64)
        _assert_aligned(out, f"custom seed {seed}")
        pads += int((out["mask"] == IGN).any())
    assert pads == 8   # the crop to 40 is always padded back to 64 with ignore


def test_custom_pipeline_is_deterministic_per_seed(tmp_path):
    p = _save(tmp_path, A.Compose([A.Rotate(limit=45, fill_mask=IGN, p=1)]))
    tf = train_transform((32, 32), str(p), IGN, 3)
    img, mask = PALETTE[_scene(32, 32)], _scene(32, 32)
    tf.set_random_seed(3)
    a = tf(image=img, mask=mask)["mask"]
    tf.set_random_seed(3)
    np.testing.assert_array_equal(a, tf(image=img, mask=mask)["mask"])


@pytest.mark.parametrize("pipeline, needle", [
    (A.Compose([A.Resize(20, 20, mask_interpolation=cv2.INTER_LINEAR)]), "mask_interpolation"),
    (A.Compose([A.Rotate(limit=10, border_mode=cv2.BORDER_CONSTANT, fill_mask=0)]), "fill_mask: 255"),
    (A.Compose([A.OneOf([A.Affine(rotate=5, fill_mask=0)])]), "fill_mask: 255"),   # nested ones too
])
def test_custom_pipeline_that_would_corrupt_labels_is_refused(tmp_path, pipeline, needle):
    p = _save(tmp_path, pipeline)
    with pytest.raises(PixelsegError) as ei:
        train_transform((32, 32), str(p), IGN, 3)
    assert str(p) in str(ei.value) and needle in str(ei.value)


def test_custom_pipeline_file_errors(tmp_path):
    with pytest.raises(PixelsegError) as ei:
        train_transform((32, 32), str(tmp_path / "missing.yaml"))
    assert "not found" in str(ei.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("transform: {__class_fullname__: NoSuchTransform}\n")
    with pytest.raises(PixelsegError) as ei:
        train_transform((32, 32), str(bad))
    assert str(bad) in str(ei.value) and "albumentations" in str(ei.value)


def test_check_augment_fails_early_on_names_and_files(tmp_path):
    from pixelseg.data.transforms import check_augment
    check_augment(None)
    check_augment("medical")
    with pytest.raises(PixelsegError, match="underwater"):
        check_augment("underwater")
    with pytest.raises(PixelsegError, match="not found"):
        check_augment(str(tmp_path / "none.yaml"))
    linear = _save(tmp_path, A.Compose([A.Resize(20, 20, mask_interpolation=cv2.INTER_LINEAR)]))
    with pytest.raises(PixelsegError, match="mask_interpolation"):
        check_augment(str(linear))
    # the padding value is only judged once the dataset's ignore index is known
    check_augment(str(_save(tmp_path, A.Compose([A.Rotate(limit=10, fill_mask=0)]), "pad.json")))
