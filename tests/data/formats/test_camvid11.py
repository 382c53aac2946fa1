"""CamVid as the 11 SegNet classes: colour-coded SegNet annotations (told apart from index ones per file), the
32-class layouts grouped into 11 (`--format camvid11`), conversion, and the run's format carried to evaluation.
Fixtures use each layout's real folders and names; every mask is compared pixel by pixel."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from pixelseg.measure.opener import open_like_run
from pixelseg.cli import main
from pixelseg.config import from_dict
from pixelseg.data.formats.camvid import COLORS, NAMES
from pixelseg.data.formats import detect_format, open_dataset
from pixelseg.data.labels import UnknownColorsError, load_mask
from pixelseg.errors import PixelsegError
from pixelseg.viz.overlay import save_label_png

from tests.helpers import dataset_makers as M

# the original release's label_colors.txt, all 32 rows, in its order
LABEL_COLORS = [
    ((64, 128, 64), "Animal"), ((192, 0, 128), "Archway"), ((0, 128, 192), "Bicyclist"), ((0, 128, 64), "Bridge"),
    ((128, 0, 0), "Building"), ((64, 0, 128), "Car"), ((64, 0, 192), "CartLuggagePram"), ((192, 128, 64), "Child"),
    ((192, 192, 128), "Column_Pole"), ((64, 64, 128), "Fence"), ((128, 0, 192), "LaneMkgsDriv"),
    ((192, 0, 64), "LaneMkgsNonDriv"), ((128, 128, 64), "Misc_Text"), ((192, 0, 192), "MotorcycleScooter"),
    ((128, 64, 64), "OtherMoving"), ((64, 192, 128), "ParkingBlock"), ((64, 64, 0), "Pedestrian"),
    ((128, 64, 128), "Road"), ((128, 128, 192), "RoadShoulder"), ((0, 0, 192), "Sidewalk"),
    ((192, 128, 128), "SignSymbol"), ((128, 128, 128), "Sky"), ((64, 128, 192), "SUVPickupTruck"),
    ((0, 0, 64), "TrafficCone"), ((0, 64, 64), "TrafficLight"), ((192, 64, 128), "Train"), ((128, 128, 0), "Tree"),
    ((192, 128, 192), "Truck_Bus"), ((64, 0, 64), "Tunnel"), ((192, 192, 0), "VegetationMisc"), ((0, 0, 0), "Void"),
    ((64, 192, 0), "Wall")]
# the SegNet grouping written the other way round (11 class -> its members), as MATLAB's CamVid example lists it
MEMBERS = {"sky": ["Sky"], "building": ["Bridge", "Building", "Wall", "Tunnel", "Archway"],
           "pole": ["Column_Pole", "TrafficCone"], "road": ["Road", "LaneMkgsDriv", "LaneMkgsNonDriv"],
           "pavement": ["Sidewalk", "ParkingBlock", "RoadShoulder"], "tree": ["Tree", "VegetationMisc"],
           "signsymbol": ["SignSymbol", "Misc_Text", "TrafficLight"], "fence": ["Fence"],
           "car": ["Car", "SUVPickupTruck", "Truck_Bus", "Train", "OtherMoving"],
           "pedestrian": ["Pedestrian", "Child", "CartLuggagePram", "Animal"],
           "bicyclist": ["Bicyclist", "MotorcycleScooter"]}
TO_11 = {m: NAMES.index(c) for c, ms in MEMBERS.items() for m in ms} | {"Void": 255}
ALL32 = np.kron(np.arange(32).reshape(4, 8), np.ones((8, 8), np.int64))   # 32x64: every class once, in 8x8 cells


def _err(fn, *a, **kw) -> str:
    with pytest.raises(PixelsegError) as ei:
        fn(*a, **kw)
    assert "\n" not in str(ei.value)
    return str(ei.value)


def _read_all(index) -> dict[str, np.ndarray]:
    return {s.stem: load_mask(s, index.mask_color_channel) for v in index.splits.values() for s in v if s.mask}


def _rgb(path, idx12: np.ndarray) -> None:
    """An 11-class colour annotation: index 11 drawn black (void)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(list(COLORS) + [(0, 0, 0)], np.uint8)[idx12]).save(path)


def make_segnet_colors(root):
    """SegNet folders whose annotations mix every coding a copy of CamVid has: RGB colours, gray index, an RGB
    holding only gray colours (sky + void), a palette PNG of colours in a scrambled palette order, and a palette
    PNG of indices drawn in the CamVid palette (what `data convert` writes)."""
    exp = {}
    for split, stem, seed in (("train", "0001TP_006690", 1), ("train", "0001TP_006720", 2), ("train", "0001TP_006750", 3),
                              ("val", "0016E5_07959", 4), ("test", "Seq05VD_f00000", 5)):
        M.image(root / split / f"{stem}.png", seed)
        idx = M.blocks(seed, list(range(12)))
        exp[stem] = np.where(idx == 11, 255, idx)
        ann = root / f"{split}annot" / f"{stem}.png"
        if stem == "0001TP_006690":
            _rgb(ann, idx)
        elif stem == "0001TP_006720":
            M.save_gray(ann, idx)
        elif stem == "0001TP_006750":
            idx = M.blocks(seed, [0, 11])   # sky (128,128,128) and void (0,0,0): colours that happen to be gray
            exp[stem] = np.where(idx == 11, 255, 0)
            _rgb(ann, idx)
        elif split == "val":
            order = np.random.default_rng(0).permutation(12)          # palette entry k holds colour order[k]
            palette = [(list(COLORS) + [(0, 0, 0)])[o] for o in order] + [(7, 7, 7)] * 20
            M.save_palette(ann, np.argsort(order)[idx], palette)
        else:   # void stored as 255, drawn in the ignore colour, as `data convert` writes it
            ann.parent.mkdir(parents=True, exist_ok=True)
            save_label_png(ann, exp[stem].astype(np.uint8), COLORS, 255)
    return exp


def test_segnet_colour_and_index_annotations_read_as_the_same_labels(tmp_path):
    exp = make_segnet_colors(tmp_path)
    assert detect_format(tmp_path) == "camvid"
    index = open_dataset(tmp_path)
    assert index.classes.names == NAMES and index.classes.ignore_index == 255
    assert {k: len(v) for k, v in index.splits.items()} == {"train": 3, "val": 1, "test": 1}
    got = _read_all(index)
    assert got.keys() == exp.keys()
    for stem in exp:
        np.testing.assert_array_equal(got[stem], exp[stem], err_msg=stem)
    # camvid11 on the SegNet layout is the same reading
    got11 = _read_all(open_dataset(tmp_path, "camvid11"))
    for stem in exp:
        np.testing.assert_array_equal(got11[stem], exp[stem], err_msg=stem)


def test_a_colour_outside_the_palette_is_an_error_with_file_colour_and_count(tmp_path, capsys):
    make_segnet_colors(tmp_path)
    ann = tmp_path / "trainannot" / "0001TP_006690.png"
    a = np.asarray(Image.open(ann)).copy()
    a[2:4, 5:8] = (10, 20, 30)                 # 6 anti-aliased pixels
    Image.fromarray(a).save(ann)
    index = open_dataset(tmp_path)
    sample = next(s for s in index.splits["train"] if s.stem == "0001TP_006690")
    with pytest.raises(UnknownColorsError) as ei:
        load_mask(sample)
    msg = str(ei.value)
    assert str(ann) in msg and "[10, 20, 30] (6 px)" in msg and "\n" not in msg
    assert ei.value.colors == {(10, 20, 30): 6}
    # and through the CLI: one line, exit 2, nothing half-written taken for a dataset
    rc = main(["data", "convert", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "[10, 20, 30] (6 px)" in err and "0001TP_006690.png" in err and "Traceback" not in err


def test_a_palette_annotation_with_a_foreign_colour_is_reported_not_read_as_indices(tmp_path):
    make_segnet_colors(tmp_path)
    ann = tmp_path / "valannot" / "0016E5_07959.png"
    im = Image.open(ann)
    a = np.asarray(im).copy()
    a[0, 0] = 20                                # an entry of the scrambled palette: (7, 7, 7)
    im2 = Image.fromarray(a, mode="P")
    im2.putpalette(im.getpalette())
    im2.save(ann)
    s = open_dataset(tmp_path).splits["val"][0]
    assert "[7, 7, 7] (1 px)" in _err(load_mask, s)


def make_color_release(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "label_colors.txt").write_text("".join(f"{r} {g} {b}\t\t{n}\n" for (r, g, b), n in LABEL_COLORS))
    idx = {"0001TP_006690": ALL32, "0006R0_f02340": np.flip(ALL32, 1), "Seq05VD_f00030": np.roll(ALL32, 8, 0)}
    for k, (stem, m) in enumerate(idx.items()):
        M.image(root / "701_StillsRaw_full" / f"{stem}.png", k, size=(32, 64))
        (root / "LabeledApproved_full").mkdir(exist_ok=True)
        Image.fromarray(np.asarray([c for c, _ in LABEL_COLORS], np.uint8)[m]).save(
            root / "LabeledApproved_full" / f"{stem}_L.png")
    (root / "valid.txt").write_text("0006R0_f02340.png\n")
    return idx


def make_fastai(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "codes.txt").write_text("\n".join(n for _, n in LABEL_COLORS) + "\n")
    idx = {"0001TP_006690": ALL32, "0016E5_08400": ALL32[::-1].copy()}
    for k, (stem, m) in enumerate(idx.items()):
        M.image(root / "images" / f"{stem}.png", k, size=(32, 64))
        M.save_gray(root / "labels" / f"{stem}_P.png", m)
    (root / "valid.txt").write_text("0016E5_08400.png\n")
    return idx


@pytest.mark.parametrize("maker", [make_color_release, make_fastai])
def test_the_32_class_layouts_read_as_32_by_default_and_as_the_11_segnet_classes(tmp_path, maker):
    raw = maker(tmp_path)
    assert detect_format(tmp_path) == "camvid"
    names32 = [n for _, n in LABEL_COLORS]
    # default: the layout's own 31 named classes (Void -> ignore), renumbered past Void
    index = open_dataset(tmp_path)
    kept = [n for n in names32 if n != "Void"]
    assert list(index.classes.names) == kept
    own = np.array([255 if n == "Void" else kept.index(n) for n in names32])
    for stem, got in _read_all(index).items():
        np.testing.assert_array_equal(got, own[raw[stem]], err_msg=stem)
    # camvid11: every one of the 32 classes lands in its SegNet group
    index = open_dataset(tmp_path, "camvid11")
    assert index.format == "camvid" and index.classes.names == NAMES and index.classes.colors == COLORS
    assert {k: [s.stem for s in v] for k, v in index.splits.items()} == \
        {"train": [s for s in raw if s not in ("0006R0_f02340", "0016E5_08400")],
         "val": [s for s in raw if s in ("0006R0_f02340", "0016E5_08400")]}
    lut = np.array([TO_11[n] for n in names32])
    got = _read_all(index)
    assert got.keys() == raw.keys()
    for stem in raw:
        np.testing.assert_array_equal(got[stem], lut[raw[stem]], err_msg=stem)
        assert set(np.unique(got[stem]).tolist()) == set(range(11)) | {255}   # all 32 present, all 11 + void out


def test_camvid11_refuses_a_class_table_it_cannot_group(tmp_path):
    make_fastai(tmp_path)
    codes = tmp_path / "codes.txt"
    codes.write_text(codes.read_text().replace("Tunnel", "Skyscraper"))
    msg = _err(open_dataset, tmp_path, "camvid11")
    assert str(codes) in msg and "'Skyscraper'" in msg and "--format camvid" in msg
    assert "Skyscraper" in open_dataset(tmp_path).classes.names   # its own classes still read


def test_convert_writes_camvid11_as_the_folder_format(tmp_path, capsys):
    raw = make_color_release(tmp_path / "CamVid")
    out = tmp_path / "folder"
    assert main(["data", "convert", str(tmp_path / "CamVid"), "--format", "camvid11", "--out", str(out)]) == 0
    assert json.loads((out / "classes.json").read_text())["names"] == list(NAMES)
    index = open_dataset(out)
    assert index.format == "folder" and index.classes.names == NAMES
    lut = np.array([TO_11[n] for _, n in LABEL_COLORS])
    got = _read_all(index)
    assert got.keys() == raw.keys()
    for stem in raw:
        np.testing.assert_array_equal(got[stem], lut[raw[stem]], err_msg=stem)
    # the colour-coded SegNet layout converts (by detection) the same way
    exp = make_segnet_colors(tmp_path / "segnet")
    assert main(["data", "convert", str(tmp_path / "segnet"), "--out", str(tmp_path / "f2")]) == 0
    got = _read_all(open_dataset(tmp_path / "f2"))
    for stem in exp:
        np.testing.assert_array_equal(got[stem], exp[stem], err_msg=stem)


def test_camvid11_is_a_config_format_and_the_run_format_carries_to_evaluation(tmp_path):
    assert from_dict({"data": {"format": "camvid11"}}).data.format == "camvid11"
    with pytest.raises(PixelsegError, match="data.format"):
        from_dict({"data": {"format": "camvid12"}})
    data = tmp_path / "CamVid"
    make_fastai(data)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"root": str(data), "format": "camvid11"}}))
    assert open_like_run(run, data).classes.names == NAMES          # what the run was trained on
    other = tmp_path / "other"
    make_color_release(other)
    assert open_like_run(run, other).classes.names == NAMES         # another CamVid copy, read as 11 too
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"root": str(data), "format": "auto"}}))
    assert len(open_like_run(run, other).classes.names) == 31
