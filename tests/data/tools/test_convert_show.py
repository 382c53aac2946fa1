"""`data convert` round-trips every format into the folder format pixel for pixel; `data show` draws what
the masks say (and what the augmentation makes of them)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from pixelseg.cli import main
from pixelseg.data.tools.convert import convert
from pixelseg.data.formats import open_dataset
from pixelseg.data.labels import load_mask
from pixelseg.data.tools.show import show, tile
from pixelseg.errors import PixelsegError

from tests.helpers import dataset_makers as M

MAKERS = {
    "voc": (M.make_voc, {}), "cityscapes": (M.make_cityscapes, {}), "ade20k": (M.make_ade20k, {}),
    "camvid": (M.make_camvid_color, {}), "colormask": (M.make_colormask, {}), "coco": (M.make_coco, {}),
    "labelme": (M.make_labelme, {}),
}


@pytest.mark.parametrize("fmt", MAKERS)
def test_convert_round_trips_pixel_for_pixel(tmp_path, fmt):
    make, kw = MAKERS[fmt]
    make(tmp_path / "src", **kw)
    src = open_dataset(tmp_path / "src")
    summary = convert(tmp_path / "src", tmp_path / "out", workers=2)
    back = open_dataset(tmp_path / "out")
    assert back.format == "folder" and back.classes.names == src.classes.names
    assert back.classes.colors == src.classes.colors and back.classes.ignore_index == src.classes.ignore_index
    assert summary.counts == {k: len(v) for k, v in src.splits.items()}
    for split, samples in src.splits.items():
        got = {s.stem: s for s in back.splits[split]}
        assert set(got) == {s.stem for s in samples}
        for s in samples:
            b = got[s.stem]
            assert b.image.read_bytes() == s.image.read_bytes()     # images copied untouched
            if s.mask is None:
                assert b.mask is None
                continue
            np.testing.assert_array_equal(load_mask(b), load_mask(s, src.mask_color_channel))


def test_convert_refuses_a_non_empty_output_and_names_collisions(tmp_path):
    M.make_voc(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep me")
    with pytest.raises(PixelsegError, match="already holds files"):
        convert(tmp_path / "src", tmp_path / "out")
    assert (tmp_path / "out" / "x").read_text() == "keep me"


def test_convert_cli_and_link(tmp_path, capsys):
    M.make_cityscapes(tmp_path / "cs")
    rc = main(["data", "convert", str(tmp_path / "cs"), "--to", "folder", "--out", str(tmp_path / "f"), "--link"])
    out = capsys.readouterr().out
    assert rc == 0 and "2 train, 1 val, 1 test" in out and "pixelseg train --data" in out
    img = next((tmp_path / "f" / "train" / "images").iterdir())
    assert img.stat().st_nlink == 2    # hard-linked, not copied


def test_decoders_survive_pickling_for_loader_workers(tmp_path):
    for name, (make, kw) in MAKERS.items():
        make(tmp_path / name, **kw)
        s = open_dataset(tmp_path / name).splits["train"][0]
        s2 = pickle.loads(pickle.dumps(s))
        np.testing.assert_array_equal(load_mask(s2), load_mask(s))


def test_tile_overlays_class_colors_where_the_mask_says():
    from pixelseg.data.classes import ClassTable
    classes = ClassTable(("a", "b"), ((0, 0, 0), (255, 0, 0)), 255)
    img = np.full((192, 192, 3), 100, np.uint8)
    mask = np.zeros((192, 192), np.uint8)
    mask[:, 96:] = 1
    mask[:10, :10] = 255
    t = tile(img, mask, classes, alpha=0.5)
    assert t.shape == (192, 192, 3)
    np.testing.assert_array_equal(t[100, 40], [50, 50, 50])      # class a (black) at half strength
    np.testing.assert_array_equal(t[100, 150], [178, 50, 50])    # class b (red)
    np.testing.assert_array_equal(t[3, 3], [100, 100, 100])      # ignore keeps the image


def test_show_grid_and_augmented(tmp_path, capsys):
    M.make_voc(tmp_path / "voc")
    out = show(tmp_path / "voc", tmp_path / "grid.png", n=2, cols=2)
    grid = np.asarray(Image.open(out))
    assert grid.shape[1] >= 2 * 192 and grid.shape[0] >= 192
    rc = main(["data", "show", str(tmp_path / "voc"), "--out", str(tmp_path / "aug.png"), "--augmented",
               "--augment", "strong", "--image-size", "48", "64", "--n", "2"])
    assert rc == 0 and "grid written" in capsys.readouterr().out
    aug = np.asarray(Image.open(tmp_path / "aug.png"))
    assert aug.shape != grid.shape or not np.array_equal(aug, grid)
    rc = main(["data", "show", str(tmp_path / "voc"), "--out", str(tmp_path / "g.gif")])
    assert rc == 2 and ".png or .jpg" in capsys.readouterr().err



def test_show_without_out_writes_beside_the_caller_not_into_the_dataset(tmp_path, capsys, monkeypatch):
    M.make_voc(tmp_path / "voc")
    before = sorted(p.name for p in (tmp_path / "voc").rglob("*"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["data", "show", str(tmp_path / "voc"), "--n", "2"]) == 0
    assert "grid written to voc_train.png" in capsys.readouterr().out
    assert Image.open(work / "voc_train.png").size[0] >= 192
    assert sorted(p.name for p in (tmp_path / "voc").rglob("*")) == before
