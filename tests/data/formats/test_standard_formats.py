"""Each standard format read from a fixture in its real layout, pixel by pixel against the known labels, plus
the one-line errors for partial layouts and the label conventions that must never pass silently."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pixelseg.data.tools.checks import scan_split
from pixelseg.data.formats import detect_format, open_dataset
from pixelseg.data.labels import UnknownColorsError, load_mask
from pixelseg.errors import PixelsegError

from tests.helpers import dataset_makers as M


def _err(fn, *a, **kw) -> str:
    with pytest.raises(PixelsegError) as ei:
        fn(*a, **kw)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def _check_all(idx, expected, key=lambda s: s.stem) -> int:
    n = 0
    for split, samples in idx.splits.items():
        for s in samples:
            if s.mask is None:
                continue
            got = load_mask(s, idx.mask_color_channel)
            np.testing.assert_array_equal(got, expected[key(s)], err_msg=f"{idx.format} {split} {s.stem}")
            n += 1
    return n


CASES = {
    "voc": (M.make_voc, {}, 21, {"train": 2, "val": 1, "test": 1}),
    "cityscapes": (M.make_cityscapes, {}, 19, {"train": 2, "val": 1, "test": 1}),
    "ade20k": (M.make_ade20k, {}, 150, {"train": 2, "val": 1}),
    "camvid-segnet": (M.make_camvid_segnet, {}, 11, {"train": 2, "val": 1, "test": 1}),
    "camvid-color": (M.make_camvid_color, {}, 4, {"train": 2, "val": 1}),
    "colormask": (M.make_colormask, {}, 3, {"train": 2, "val": 1}),
    "colormask-csv": (M.make_colormask, {"class_dict": True}, 3, {"train": 2, "val": 1}),
    "coco": (M.make_coco, {}, 3, {"train": 2, "val": 1}),
    "coco-roboflow": (M.make_coco, {"roboflow": True}, 3, {"train": 2, "val": 1}),
    "labelme": (M.make_labelme, {}, 3, {"train": 2, "val": 1}),
}


@pytest.mark.parametrize("case", CASES)
def test_format_read_pixel_by_pixel(tmp_path, case):
    make, kw, k, sizes = CASES[case]
    root = tmp_path / case
    expected = make(root, **kw)
    fmt = case.split("-")[0]
    assert detect_format(root) == fmt
    idx = open_dataset(root)
    assert idx.format == fmt and idx.classes.num_classes == k and idx.classes.ignore_index == 255
    assert {s: len(v) for s, v in idx.splits.items()} == sizes
    assert _check_all(idx, expected) == len(expected)   # every labelled image, test split included where labelled
    # and the up-front check that training runs agrees: every labelled image is valid
    for split in ("train", "val"):
        assert scan_split(idx, split, decode_images=True).problems == []
    assert open_dataset(root, format=fmt).format == fmt   # forcing the detected format gives the same


def test_voc_names_and_void(tmp_path):
    M.make_voc(tmp_path)
    idx = open_dataset(tmp_path)
    assert idx.classes.names[0] == "background" and idx.classes.names[15] == "person"
    s = idx.splits["train"][0]
    assert (load_mask(s)[0] == 255).all()  # the void outline stays the ignore index
    assert idx.splits["test"][0].mask is None


@pytest.mark.parametrize("kind", ["aug", "mat"])
def test_voc_sbd_trainaug(tmp_path, kind):
    expected = M.make_voc(tmp_path, sbd=kind)
    idx = open_dataset(tmp_path)
    stems = [s.stem for s in idx.splits["train"]]
    assert "2007_000033" not in stems, "a VOC val image leaked into the SBD train split"
    assert [s.stem for s in idx.splits["val"]] == ["2007_000033"]
    extra = "2008_000100" if kind == "aug" else "2008_000200"
    assert extra in stems and any("SBD" in n for n in idx.notes)
    pre = f"{kind if kind == 'aug' else 'sbd'}:"
    for s in idx.splits["train"]:
        key = pre + s.stem if (kind == "aug" or s.mask.suffix == ".mat") else s.stem
        np.testing.assert_array_equal(load_mask(s), expected[key])


def test_cityscapes_uses_the_official_table(tmp_path):
    from cityscapesscripts.helpers.labels import trainId2label
    M.make_cityscapes(tmp_path)
    idx = open_dataset(tmp_path)
    assert idx.classes.names == tuple(trainId2label[i].name for i in range(19))
    assert idx.classes.colors[0] == (128, 64, 128)  # road
    assert idx.splits["test"][0].mask is None       # the public test labels are placeholders


def test_cityscapes_missing_label_names_it(tmp_path):
    M.make_cityscapes(tmp_path)
    lab = tmp_path / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_labelIds.png"
    lab.unlink()
    msg = _err(open_dataset, tmp_path)
    assert str(lab) in msg and "leftImg8bit" in msg


def test_ade20k_reduce_zero_label_and_object_info(tmp_path):
    M.make_ade20k(tmp_path, info=True)
    idx = open_dataset(tmp_path)
    assert idx.classes.names[0] == "thing1" and idx.classes.names[149] == "thing150"
    m = load_mask(idx.splits["train"][0])
    assert m.max() <= 149 or 255 in m


def test_ade20k_value_out_of_range_is_an_error(tmp_path):
    M.make_ade20k(tmp_path)
    ann = tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png"
    M.save_gray(ann, np.full((M.H, M.W), 200, np.uint8))
    idx = open_dataset(tmp_path)
    msg = _err(load_mask, idx.splits["train"][0])
    assert str(ann) in msg and "200" in msg and "ADE20K" in msg


def test_colormask_unknown_color_lists_it_with_counts(tmp_path):
    M.make_colormask(tmp_path)
    p = tmp_path / "train" / "masks" / "a.png"
    a = np.array(Image.open(p))
    a[:2, :3] = (1, 2, 3)        # 6 anti-aliased pixels
    Image.fromarray(a).save(p)
    idx = open_dataset(tmp_path)
    s = next(s for s in idx.splits["train"] if s.stem == "a")
    with pytest.raises(UnknownColorsError) as ei:
        load_mask(s)
    assert ei.value.colors == {(1, 2, 3): 6}
    assert str(p) in str(ei.value) and "[1, 2, 3] (6 px)" in str(ei.value)


def test_colormask_without_a_color_table_is_an_error(tmp_path):
    M.make_colormask(tmp_path)
    (tmp_path / "classes.json").unlink()
    msg = _err(open_dataset, tmp_path)
    assert "color-coded" in msg and "classes.json" in msg and "class_dict.csv" in msg


def test_rgb_color_mask_in_the_folder_format_is_detected_not_read_as_ids(tmp_path):
    """The classic mislabel: color masks passed where index masks are expected."""
    M.make_colormask(tmp_path)
    msg = _err(open_dataset, tmp_path, format="folder")   # its classes.json is a color table
    assert "--format colormask" in msg
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["sky", "roof", "tree", "x"]}))
    # forced to the index-mask format, reading a mask must fail, never give some channel as ids
    idx = open_dataset(tmp_path, format="folder")
    rep = scan_split(idx, "train")
    assert rep.problems and "color-coded" in rep.problems[0]


def test_binary_0_255_masks_are_not_silently_all_background(tmp_path):
    for split, stems in (("train", ["a", "b"]), ("val", ["c"])):
        for k, stem in enumerate(stems):
            M.image(tmp_path / split / "images" / f"{stem}.png", k)
            M.save_gray(tmp_path / split / "masks" / f"{stem}.png", M.blocks(k, [0, 255]))
    msg = _err(open_dataset, tmp_path)
    assert "255" in msg and '"values": [0, 255]' in msg
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["background", "foreground"], "values": [0, 255]}))
    idx = open_dataset(tmp_path)
    s = idx.splits["train"][0]
    np.testing.assert_array_equal(load_mask(s), M.blocks(0, [0, 255]) // 255)
    assert scan_split(idx, "train").problems == []


def test_values_key_maps_and_rejects_unlisted_values(tmp_path):
    for split, stems in (("train", ["a"]), ("val", ["b"])):
        for k, stem in enumerate(stems):
            M.image(tmp_path / split / "images" / f"{stem}.png", k)
            M.save_gray(tmp_path / split / "masks" / f"{stem}.png", M.blocks(k, [10, 20, 30]))
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["x", "y", "z"], "values": [10, 20, 30]}))
    idx = open_dataset(tmp_path)
    np.testing.assert_array_equal(load_mask(idx.splits["train"][0]), M.blocks(0, [0, 1, 2]))
    M.save_gray(tmp_path / "val" / "masks" / "b.png", np.full((M.H, M.W), 40, np.uint8))
    msg = _err(load_mask, open_dataset(tmp_path).splits["val"][0])
    assert "40" in msg and "b.png" in msg


def test_coco_unknown_category_and_missing_image(tmp_path):
    M.make_coco(tmp_path)
    ann = tmp_path / "annotations" / "instances_val2017.json"
    doc = json.loads(ann.read_text())
    doc["annotations"][0]["category_id"] = 99
    ann.write_text(json.dumps(doc))
    msg = _err(open_dataset, tmp_path)
    assert str(ann) in msg and "99" in msg
    M.make_coco(tmp_path)
    (tmp_path / "train2017" / "train_0001.jpg").unlink()
    msg = _err(open_dataset, tmp_path)
    assert "train_0001.jpg" in msg and "missing" in msg


def test_labelme_unknown_label_names_file_and_shape(tmp_path):
    M.make_labelme(tmp_path)
    M.write_labelme(tmp_path / "img_b.json", "img_b.jpg", [{"label": "horse", "points": [[1, 1], [5, 5]],
                                                             "shape_type": "rectangle"}])
    idx = open_dataset(tmp_path)
    s = next(s for split in idx.splits.values() for s in split if s.stem == "img_b")
    msg = _err(load_mask, s)
    assert str(tmp_path / "img_b.json") in msg and "horse" in msg and "labels.txt" in msg


def test_labelme_missing_image(tmp_path):
    M.make_labelme(tmp_path)
    (tmp_path / "img_c.jpg").unlink()
    msg = _err(open_dataset, tmp_path)
    assert "img_c.json" in msg and "img_c.jpg" in msg


@pytest.mark.parametrize("case,breaker,needle", [
    ("voc", lambda r: (r / "VOCdevkit" / "VOC2012" / "ImageSets").rename(r / "moved"), "train.txt"),
    ("voc", lambda r: (r / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000039.png").unlink(), "2007_000039.png"),
    ("camvid-segnet", lambda r: shutil.rmtree(r / "valannot"), "valannot"),
    ("camvid-segnet", lambda r: (r / "trainannot" / "0001TP_000001.png").unlink(), "0001TP_000001.png"),
    ("ade20k", lambda r: (r / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000001.png").unlink(),
     "ADE_val_00000001.png"),
])
def test_partial_layouts_fail_with_one_line_naming_the_file(tmp_path, case, breaker, needle):
    make, kw, *_ = CASES[case]
    make(tmp_path, **kw)
    breaker(tmp_path)
    fmt = case.split("-")[0]
    msg = _err(open_dataset, tmp_path, format=fmt)
    assert needle in msg


def test_voc_rgb_mask_is_reported(tmp_path):
    """A VOC mask re-saved as RGB (the palette colors) must not be read as class ids."""
    M.make_voc(tmp_path)
    p = tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000032.png"
    Image.open(p).convert("RGB").save(p)
    idx = open_dataset(tmp_path)
    problems = scan_split(idx, "train").problems
    assert len(problems) == 1 and str(p) in problems[0] and "color-coded" in problems[0]


def test_ignore_values_make_zero_unlabelled(tmp_path):
    """Masks storing 1..N with 0 = unlabelled (the 'reduce zero label' convention) in the folder format."""
    for split, stems in (("train", ["a", "b"]), ("val", ["c"])):
        for k, stem in enumerate(stems):
            M.image(tmp_path / split / "images" / f"{stem}.png", 10 * len(split) + k)
            M.save_gray(tmp_path / split / "masks" / f"{stem}.png", M.blocks(k, [0, 1, 2]))
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["cat", "dog"], "values": [1, 2], "ignore_values": [0]}))
    idx = open_dataset(tmp_path)
    raw = M.blocks(0, [0, 1, 2])
    np.testing.assert_array_equal(load_mask(idx.splits["train"][0]), np.where(raw == 0, 255, raw - 1))
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["cat", "dog"], "values": [1, 2], "ignore_values": [2]}))
    assert "ignore_values" in _err(open_dataset, tmp_path)


def test_doctor_hints_at_ignore_values_when_zero_never_appears(tmp_path):
    from pixelseg.data.tools.doctor import diagnose
    for split, stems in (("train", ["a", "b"]), ("val", ["c"])):
        for k, stem in enumerate(stems):
            M.image(tmp_path / split / "images" / f"{stem}.png", 10 * len(split) + k)
            M.save_gray(tmp_path / split / "masks" / f"{stem}.png", M.blocks(k, [1, 2]))
    hint = [w for w in diagnose(tmp_path).warnings if "class_0" in w]
    assert len(hint) == 1 and '"ignore_values": [0]' in hint[0]


def test_cityscapes_label_train_ids_are_read_when_label_ids_are_absent(tmp_path):
    expected = M.make_cityscapes(tmp_path)
    for lab in (tmp_path / "gtFine").rglob("*_gtFine_labelIds.png"):
        stem = lab.name[: -len("_gtFine_labelIds.png")]
        M.save_gray(lab.with_name(f"{stem}_gtFine_labelTrainIds.png"), expected[stem])
        lab.unlink()
    idx = open_dataset(tmp_path)
    assert _check_all(idx, expected) == len(expected)
