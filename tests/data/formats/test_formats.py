"""Finding a dataset on disk: layout detection, pairing, holdout, class table, and errors that name the path."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixelseg.data.classes import ClassTable
from pixelseg.data.formats import detect_format, open_dataset
from pixelseg.data.formats.layout import holdout as _holdout
from pixelseg.errors import PixelsegError


def _img(p, seed=0, size=(6, 8)):
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(p)


def _mask(p, values=(0, 1), size=(6, 8), rgb_blue=False):
    p.parent.mkdir(parents=True, exist_ok=True)
    m = np.resize(np.array(values, np.uint8), size)
    if rgb_blue:  # keras_segmentation: the index is in the blue channel, the others hold anything
        m = np.stack([np.full_like(m, 200), np.full_like(m, 13), m], axis=2)
    Image.fromarray(m).save(p)


def make_folder(root, splits=None, classes=True):
    splits = splits if splits is not None else {"train": ["a", "b", "c"], "val": ["d"]}
    for split, stems in splits.items():
        for i, s in enumerate(stems):
            _img(root / split / "images" / f"{s}.jpg", i)
            _mask(root / split / "masks" / f"{s}.png", (0, 1, 2))
    if classes:
        (root / "classes.json").write_text(json.dumps({"names": ["bg", "a", "b"]}))
    return root


def make_keras(root, splits=None, values=(0, 1, 3)):
    splits = splits if splits is not None else {"train": ["a", "b"], "val": ["c"]}
    for split, stems in splits.items():
        for i, s in enumerate(stems):
            _img(root / f"{split}_images" / f"{s}.jpg", i)
            _mask(root / f"{split}_segmentation" / f"{s}.png", values, rgb_blue=True)
    return root


def _err(fn, *a, **kw) -> str:
    with pytest.raises(PixelsegError) as ei:
        fn(*a, **kw)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- layouts

def test_folder_layout_detected_and_paired(tmp_path):
    root = make_folder(tmp_path / "ds")
    _img(root / "test" / "images" / "t1.png")  # test split without masks is allowed
    idx = open_dataset(root)
    assert idx.format == "folder" and idx.mask_color_channel is None
    assert [s.stem for s in idx.splits["train"]] == ["a", "b", "c"]
    assert [s.stem for s in idx.split("val")] == ["d"]
    for s in idx.splits["train"] + idx.splits["val"]:
        assert s.image.stem == s.mask.stem == s.stem
        assert s.image.parent.name == "images" and s.mask.parent.name == "masks"
    assert idx.splits["test"][0].mask is None
    assert idx.classes.names == ("bg", "a", "b") and not idx.classes.derived
    assert idx.notes == []


def test_keras_layout_detected_paired_and_reads_blue(tmp_path):
    root = make_keras(tmp_path / "ds")
    assert detect_format(root) == "keras"
    idx = open_dataset(root)
    assert idx.format == "keras" and idx.mask_color_channel == 2
    assert [(s.image.parent.name, s.mask.parent.name) for s in idx.splits["train"]] == [
        ("train_images", "train_segmentation")] * 2
    assert [s.stem for s in idx.splits["val"]] == ["c"]
    # classes derived from the blue channel (0, 1, 3), not from R=200 / G=13
    assert idx.classes.derived and idx.classes.num_classes == 4


def test_format_forcing(tmp_path):
    root = make_folder(tmp_path / "ds", {"train": ["a", "b"], "val": ["c"]})
    make_keras(root, {"train": ["k1", "k2", "k3"], "val": ["k4"]})
    assert open_dataset(root).format == "folder"        # auto prefers the folder layout
    idx = open_dataset(root, format="keras")
    assert idx.format == "keras" and [s.stem for s in idx.splits["train"]] == ["k1", "k2", "k3"]

    only_folder = make_folder(tmp_path / "f")
    msg = _err(open_dataset, only_folder, format="keras")
    assert str(only_folder / "train_images") in msg and "keras" in msg
    msg = _err(open_dataset, only_folder, format="voc")   # forcing a layout the folder is not in names that layout
    assert str(only_folder) in msg and "JPEGImages" in msg and "SegmentationClass" in msg
    msg = _err(open_dataset, only_folder, format="pascal")
    assert "pascal" in msg and all(f in msg for f in ("folder", "keras", "voc", "cityscapes", "coco", "labelme"))


# ---------------------------------------------------------------- pairing errors

def test_image_without_mask(tmp_path):
    root = make_folder(tmp_path / "ds")
    _img(root / "train" / "images" / "lonely.jpg")
    msg = _err(open_dataset, root)
    assert str(root / "train" / "images" / "lonely.jpg") in msg
    assert str(root / "train" / "masks" / "lonely.png") in msg
    assert "add the mask or remove the image" in msg


def test_mask_without_image(tmp_path):
    root = make_folder(tmp_path / "ds")
    _mask(root / "val" / "masks" / "orphan.png")
    msg = _err(open_dataset, root)
    assert str(root / "val" / "masks" / "orphan.png") in msg
    assert "add the image or remove the mask" in msg


def test_hidden_files_in_mask_folder_are_ignored(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "train" / "masks" / "._a.png").write_bytes(b"\x00\x05macOS metadata")  # AppleDouble file
    idx = open_dataset(root)
    assert [s.stem for s in idx.splits["train"]] == ["a", "b", "c"]


def test_missing_masks_folder(tmp_path):
    root = make_folder(tmp_path / "ds")
    for p in (root / "val" / "masks").iterdir():
        p.unlink()
    (root / "val" / "masks").rmdir()
    msg = _err(open_dataset, root)
    assert str(root / "val" / "masks") in msg and "mask folder not found" in msg


def test_missing_dataset_folder(tmp_path):
    msg = _err(open_dataset, tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in msg and "--data" in msg


def test_unknown_layout(tmp_path):
    root = tmp_path / "ds"
    _img(root / "pictures" / "a.png")
    msg = _err(open_dataset, root)
    assert str(root) in msg and "train/images" in msg and "train_images" in msg


def test_two_images_with_the_same_stem(tmp_path):
    root = make_folder(tmp_path / "ds")
    _img(root / "train" / "images" / "a.png")  # a.jpg already there
    msg = _err(open_dataset, root)
    assert str(root / "train" / "images") in msg and "'a'" in msg and "rename" in msg


def test_two_masks_with_the_same_stem(tmp_path):
    root = make_folder(tmp_path / "ds")
    _mask(root / "train" / "masks" / "b.bmp")  # b.png already there
    msg = _err(open_dataset, root)
    assert str(root / "train" / "masks") in msg and "'b'" in msg and "rename" in msg


# ---------------------------------------------------------------- holdout

def test_no_val_split_holds_out_by_hash_with_a_note(tmp_path):
    stems = [f"img{i:03d}" for i in range(40)]
    root = make_folder(tmp_path / "ds", {"train": stems})
    idx = open_dataset(root, val_fraction=0.25)
    train = {s.stem for s in idx.splits["train"]}
    val = {s.stem for s in idx.splits["val"]}
    assert val and train and not (train & val) and train | val == set(stems)
    assert any("no val split" in n and str(len(val)) in n for n in idx.notes)

    again = open_dataset(root, val_fraction=0.25)      # deterministic
    assert {s.stem for s in again.splits["val"]} == val

    for i in range(40, 60):                              # adding files does not move the old ones
        _img(root / "train" / "images" / f"img{i:03d}.jpg", i)
        _mask(root / "train" / "masks" / f"img{i:03d}.png")
    grown = open_dataset(root, val_fraction=0.25)
    gval = {s.stem for s in grown.splits["val"]}
    gtrain = {s.stem for s in grown.splits["train"]}
    assert val <= gval and train <= gtrain


def test_holdout_independent_of_order(tmp_path):
    from pixelseg.data.index import Sample
    samples = [Sample(tmp_path / f"{i}.png", tmp_path / f"{i}.png", f"s{i}") for i in range(30)]
    _, val_a = _holdout(samples, 0.2)
    _, val_b = _holdout(samples[::-1], 0.2)
    assert {s.stem for s in val_a} == {s.stem for s in val_b}
    tr, va = _holdout(samples[:2], 0.0001)              # tiny set: still one validation image
    assert len(va) == 1 and len(tr) == 1


# ---------------------------------------------------------------- class table

def test_classes_derived_from_mask_values_ignoring_255(tmp_path):
    root = make_folder(tmp_path / "ds", classes=False)
    _mask(root / "train" / "masks" / "a.png", (0, 4, 255))   # overwrite: max class 4, 255 is ignore
    idx = open_dataset(root)
    assert idx.classes.derived
    assert idx.classes.names == ("class_0", "class_1", "class_2", "class_3", "class_4")
    assert idx.classes.ignore_index == 255
    assert any("no classes.json" in n and "class_4" in n for n in idx.notes)


def test_all_ignore_masks_cannot_derive_classes(tmp_path):
    root = make_folder(tmp_path / "ds", {"train": ["a"], "val": ["b"]}, classes=False)
    for s in ("train/masks/a.png", "val/masks/b.png"):
        _mask(root / s, (255,))
    msg = _err(open_dataset, root)
    assert str(root) in msg and "255" in msg


@pytest.mark.parametrize("text, expect", [
    ('{"names": ["bg", "car"', "not valid JSON"),
    ('{"names": ["bg", "car"], "colours": [[0,0,0],[1,1,1]]}', "colours"),
    ('{"names": ["bg", "car"], "ignore_index": 1}', "ignore_index 1"),
    ('{"names": ["bg", "car"], "ignore_index": -1}', "ignore_index -1"),
    ('{"names": ["bg", "car"], "colors": [[0,0,0]]}', "colors"),
    ('{"names": ["bg", "bg"]}', "unique"),
    ('["bg", "car"]', "names"),
])
def test_bad_classes_json_names_the_file(tmp_path, text, expect):
    root = make_folder(tmp_path / "ds", classes=False)
    (root / "classes.json").write_text(text)
    msg = _err(open_dataset, root)
    assert str(root / "classes.json") in msg and expect in msg


def test_class_table_json_round_trip(tmp_path):
    t = ClassTable(("bg", "road"), ((0, 0, 0), (128, 64, 128)), ignore_index=254)
    (tmp_path / "c.json").write_text(json.dumps(t.to_dict()))
    assert ClassTable.from_json(tmp_path / "c.json") == t
    assert ClassTable.from_dict({"names": ["x", "y"]}).colors[1] != (0, 0, 0)
