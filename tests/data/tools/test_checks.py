"""Dataset checks: every problem collected with its file, exact per-class pixel counts, require_clean."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixelseg.data.tools.checks import require_clean, scan_split
from pixelseg.data.formats import open_dataset
from pixelseg.errors import PixelsegError

MASKS = {  # hand-made 2x3 masks; classes bg/a/b, 255 = ignore
    "a": [[0, 0, 1], [2, 255, 1]],     # bg 2, a 2, b 1, ignore 1
    "b": [[1, 1, 1], [0, 0, 255]],     # bg 2, a 3, b 0, ignore 1
}


def _write(root, split, stem, mask, img_hw=None, dtype=np.uint8):
    mask = np.asarray(mask, dtype)
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "masks").mkdir(parents=True, exist_ok=True)
    hw = img_hw or mask.shape
    Image.fromarray(np.full((*hw, 3), 120, np.uint8)).save(root / split / "images" / f"{stem}.png")
    Image.fromarray(mask).save(root / split / "masks" / f"{stem}.png")
    return root / split / "masks" / f"{stem}.png"


def _dataset(tmp_path, train=MASKS, ignore_index=255):
    root = tmp_path / "ds"
    for stem, m in train.items():
        _write(root, "train", stem, m)
    _write(root, "val", "v", [[0, 1, 2], [2, 1, 0]])
    (root / "classes.json").write_text(json.dumps({"names": ["bg", "a", "b"], "ignore_index": ignore_index}))
    return root


def test_counts_per_class_with_ignore_at_the_end(tmp_path):
    idx = open_dataset(_dataset(tmp_path))
    rep = scan_split(idx, "train", workers=2)
    assert rep.name == "train" and rep.images == 2 and rep.problems == []
    np.testing.assert_array_equal(rep.counts, [4, 5, 1, 2])
    np.testing.assert_array_equal(scan_split(idx, "val").counts, [2, 2, 2, 0])


def test_counts_with_a_non_default_ignore_index(tmp_path):
    train = {"a": [[0, 9, 9], [1, 2, 2]]}
    idx = open_dataset(_dataset(tmp_path, train, ignore_index=9))
    rep = scan_split(idx, "train")
    np.testing.assert_array_equal(rep.counts, [1, 1, 2, 2])

    _write(tmp_path / "ds", "train", "c", [[255, 0, 0], [0, 0, 0]])   # 255 is no longer the ignore index
    rep = scan_split(open_dataset(tmp_path / "ds"), "train")
    assert len(rep.problems) == 1 and "255" in rep.problems[0] and "c.png" in rep.problems[0]


def test_scan_collects_every_problem(tmp_path):
    root = _dataset(tmp_path)
    bad_value = _write(root, "train", "c", [[0, 7, 1], [1, 1, 1]])
    bad_size = _write(root, "train", "d", [[0, 0, 1], [1, 1, 1]], img_hw=(4, 5))
    bad_16 = _write(root, "train", "e", [[0, 300, 1], [1, 1, 1]], dtype=np.uint16)
    rep = scan_split(open_dataset(root), "train")
    assert rep.images == 5
    assert len(rep.problems) == 3
    p_value, p_size, p_16 = rep.problems          # in file order, each naming its mask
    assert str(bad_value) in p_value and "7" in p_value and "0..2" in p_value
    assert str(bad_size) in p_size and "3x2" in p_size and "5x4" in p_size
    assert str(bad_16) in p_16 and "300" in p_16
    np.testing.assert_array_equal(rep.counts, [4, 5, 1, 2])   # only the clean masks are counted


def test_decode_images_catches_a_truncated_image(tmp_path):
    root = _dataset(tmp_path)
    img = root / "train" / "images" / "big.png"
    _write(root, "train", "big", np.zeros((40, 40), np.uint8))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(img)
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])          # the header survives: only decoding finds it
    idx = open_dataset(root)
    assert scan_split(idx, "train").problems == []
    problems = scan_split(idx, "train", decode_images=True).problems
    assert len(problems) == 1 and str(img) in problems[0] and "\n" not in problems[0]


def test_corrupt_mask_is_a_problem_not_a_crash(tmp_path):
    root = _dataset(tmp_path)
    (root / "train" / "masks" / "a.png").write_text("not a png")
    rep = scan_split(open_dataset(root), "train")
    assert len(rep.problems) == 1 and str(root / "train" / "masks" / "a.png") in rep.problems[0]


def test_require_clean_passes_a_clean_set(tmp_path):
    reports = require_clean(open_dataset(_dataset(tmp_path)))
    assert set(reports) == {"train", "val"}
    np.testing.assert_array_equal(reports["train"].counts, [4, 5, 1, 2])


def test_require_clean_raises_on_the_first_problem(tmp_path):
    root = _dataset(tmp_path)
    bad = _write(root, "val", "w", [[0, 5, 5], [1, 1, 1]])
    with pytest.raises(PixelsegError) as ei:
        require_clean(open_dataset(root))
    assert str(bad) in str(ei.value) and "more problem" not in str(ei.value)


def test_require_clean_counts_the_other_problems(tmp_path):
    root = _dataset(tmp_path)
    first = _write(root, "train", "c", [[0, 7, 1], [1, 1, 1]])
    second = _write(root, "train", "d", [[0, 8, 1], [1, 1, 1]])
    idx = open_dataset(root)
    with pytest.raises(PixelsegError) as ei:
        require_clean(idx)
    msg = str(ei.value)
    assert msg.startswith(str(first)) and str(second) not in msg
    assert msg.endswith(f" (1 more problem(s): run `pixelseg verify-dataset {root}`)")
    assert "\n" not in msg
