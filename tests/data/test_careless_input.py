"""Careless input is reported for what it is, in one line naming the file and the fix (issue 16)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from pixelseg.data.tools.checks import require_clean
from pixelseg.data.classes import ClassTable
from pixelseg.data.tools.doctor import diagnose
from pixelseg.data.formats import open_dataset
from pixelseg.errors import PixelsegError

from tests.helpers import dataset_makers as M


def _ds(root, classes=None, masks=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(classes or {"names": ["bg", "fg"]}))
    for split in ("train", "val"):
        for k in range(2):
            stem = f"{split}{k}"
            M.image(root / split / "images" / f"{stem}.png", k)
            M.save_gray(root / split / "masks" / f"{stem}.png", M.blocks(k, [0, 1]) if masks is None else masks)
    return root


def _one_line(e, *needles) -> str:
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    return msg


def test_gif_image_is_named_as_gif_not_as_an_orphan_mask(tmp_path):
    root = _ds(tmp_path / "ds")
    img = root / "train" / "images" / "train0.png"
    Image.open(img).save(root / "train" / "images" / "train0.gif")
    img.unlink()
    with pytest.raises(PixelsegError) as e:
        open_dataset(root)
    msg = _one_line(e, "train0.gif", "GIF")
    assert "mask without an image" not in msg
    assert any("train0.gif" in p and "GIF" in p for p in diagnose(root, workers=1).problems)


def test_dangling_symlink_and_folder_named_png(tmp_path):
    root = _ds(tmp_path / "ds")
    (root / "train" / "images" / "train0.png").unlink()
    os.symlink(tmp_path / "gone.png", root / "train" / "images" / "train0.png")
    with pytest.raises(PixelsegError) as e:
        open_dataset(root)
    _one_line(e, "train0.png", "symbolic link to a missing file")
    (root / "train" / "images" / "train0.png").unlink()
    (root / "train" / "images" / "train0.png").mkdir()
    with pytest.raises(PixelsegError) as e:
        open_dataset(root)
    assert "mask without an image" not in _one_line(e, "train0.png", "is a folder")


def test_jpeg_mask_is_told_masks_must_be_png(tmp_path):
    root = _ds(tmp_path / "ds")
    m = root / "train" / "masks" / "train0.png"
    # a 0/1 mask scaled for visibility and saved lossy: JPEG invents in-between values at the edges
    Image.fromarray((np.asarray(Image.open(m)) * 200).astype(np.uint8)).save(m.with_suffix(".jpg"), quality=60)
    m.unlink()
    with pytest.raises(PixelsegError) as e:
        require_clean(open_dataset(root))
    _one_line(e, "train0.jpg", "masks must be PNG")
    assert any("train0.jpg" in w and "must be PNG" in w for w in diagnose(root, workers=1).warnings)


@pytest.mark.parametrize("ignore", [256, 70000, 2_000_000_000])
def test_ignore_index_the_masks_cannot_store(tmp_path, ignore):
    root = _ds(tmp_path / "ds", {"names": ["bg", "fg"], "ignore_index": ignore})
    with pytest.raises(PixelsegError) as e:
        require_clean(open_dataset(root))
    _one_line(e, str(ignore), "ignore_index")
    if ignore <= 65535:
        assert "8-bit" in str(e.value)


def test_class_table_refuses_an_ignore_index_no_mask_can_hold():
    with pytest.raises(PixelsegError, match="cannot occur in a mask"):
        ClassTable(("a", "b"), ((0, 0, 0), (1, 1, 1)), 2_000_000_000)


def test_all_ignore_training_masks_are_refused_with_the_fix(tmp_path):
    root = _ds(tmp_path / "ds", masks=np.full((M.H, M.W), 255, np.uint8))
    with pytest.raises(PixelsegError) as e:
        require_clean(open_dataset(root))
    _one_line(e, str(root), "all ignore", "label some pixels")
    assert any("label some pixels" in p for p in diagnose(root, workers=1).problems)


def test_doctor_names_exif_when_it_explains_a_size_mismatch(tmp_path):
    root = _ds(tmp_path / "ds")
    img = root / "train" / "images" / "train0.png"
    a = np.asarray(Image.open(img))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(img, exif=exif)      # stored as the mask, but shown (and read) turned
    problems = diagnose(root, workers=1).problems
    assert any("EXIF orientation" in p and "train0.png" in p for p in problems), problems


def test_convert_to_an_existing_file_is_one_line(tmp_path):
    from pixelseg.data.tools.convert import convert
    root = _ds(tmp_path / "ds")
    (tmp_path / "out.txt").write_text("mine")
    with pytest.raises(PixelsegError) as e:
        convert(root, tmp_path / "out.txt")
    _one_line(e, "out.txt", "is a file")
    assert (tmp_path / "out.txt").read_text() == "mine"
