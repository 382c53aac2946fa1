import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from pixelseg.viz import overlay as viz
from pixelseg.data.classes import ClassTable, voc_colormap
from pixelseg.errors import PixelsegError

COLORS = [(0, 0, 0), (200, 10, 10), (10, 200, 10), (10, 10, 200)]


def _label(h=32, w=40, n=4, seed=0):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, n, (h, w)).astype(np.uint8)
    lab[:3, :5] = 255
    return lab


def _blocks(h=60, w=80):
    """Four big rectangles: plenty of pixels away from any class edge."""
    lab = np.zeros((h, w), np.uint8)
    lab[:h // 2, w // 2:] = 1
    lab[h // 2:, :w // 2] = 2
    lab[h // 2:, w // 2:] = 3
    return lab


def _image(h=60, w=80, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _tmp_leftovers(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


# ----------------------------------------------------------------------------------- colorize

@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.uint16])
def test_colorize_maps_indices_and_ignore(dtype):
    lab = _label().astype(dtype)
    out = viz.colorize(lab, COLORS, ignore_index=255, ignore_color=(1, 2, 3))
    assert out.shape == lab.shape + (3,) and out.dtype == np.uint8
    for i, c in enumerate(COLORS):
        assert (out[lab == i] == c).all()
    assert (out[lab == 255] == (1, 2, 3)).all()
    assert (lab == 255).any() and all((lab == i).any() for i in range(4))


def test_colorize_out_of_range_raises():
    lab = _label()
    lab[5, 5] = 4                      # 4 classes: 4 is neither a class nor ignore
    with pytest.raises(ValueError, match="4"):
        viz.colorize(lab, COLORS)
    with pytest.raises(ValueError):
        viz.colorize(np.array([[0, -1]]), COLORS)
    with pytest.raises(ValueError):
        viz.colorize(np.array([[0, 300]]), COLORS)
    with pytest.raises(ValueError):
        viz.colorize(np.zeros((4, 4), np.float32), COLORS)


def test_colorize_ignore_index_that_is_a_class_keeps_class_color():
    cmap = voc_colormap(256)
    out = viz.colorize(np.array([[255, 1]], np.uint8), cmap, ignore_index=255)
    assert tuple(out[0, 0]) == cmap[255] and tuple(out[0, 1]) == cmap[1]


def test_colorize_many_classes_and_non_uint8_ignore():
    cmap = voc_colormap(300)
    lab = np.arange(300 * 4).reshape(40, 30) % 300
    lab[0, 0] = 1000
    out = viz.colorize(lab, cmap, ignore_index=1000, ignore_color=(9, 9, 9))
    assert tuple(out[0, 0]) == (9, 9, 9)
    assert (out[1:].reshape(-1, 3) == np.asarray(cmap)[lab[1:].ravel()]).all()


def test_colorize_big_is_fast():
    lab = np.random.default_rng(0).integers(0, 20, (4000, 4000)).astype(np.uint8)
    lab[:100] = 255
    viz.colorize(lab[:10], voc_colormap(20))        # warm up
    t = time.perf_counter()
    viz.colorize(lab, voc_colormap(20))
    assert time.perf_counter() - t < 1.0


# ----------------------------------------------------------------------------------- label PNGs

def test_save_label_png_is_palette_png_of_indices(tmp_path):
    lab = _label()
    p = tmp_path / "m.png"
    viz.save_label_png(p, lab, COLORS, ignore_index=255)
    with Image.open(p) as im:
        assert im.mode == "P"
        assert (np.array(im) == lab).all()
        pal = np.array(im.getpalette()).reshape(-1, 3)
    assert (pal[:4] == np.array(COLORS)).all()
    assert tuple(pal[255]) == viz.IGNORE_COLOR
    got = viz.read_label_png(p)
    assert got.dtype == np.uint8 and (got == lab).all()
    assert _tmp_leftovers(tmp_path) == []


def test_save_label_png_more_than_255_classes_uses_16_bit(tmp_path):
    cmap = voc_colormap(300)
    lab = (np.arange(40 * 30).reshape(40, 30) % 300).astype(np.int64)
    p = tmp_path / "big.png"
    viz.save_label_png(p, lab, cmap, ignore_index=65535)
    with Image.open(p) as im:
        assert im.mode.startswith("I")
    got = viz.read_label_png(p)
    assert (got.astype(np.int64) == lab).all()


def test_save_label_png_rejects_bad_values_and_lossy_suffix(tmp_path):
    lab = _label()
    lab[0, 0] = 9
    with pytest.raises(ValueError):
        viz.save_label_png(tmp_path / "m.png", lab, COLORS)
    with pytest.raises(ValueError, match="png"):
        viz.save_label_png(tmp_path / "m.jpg", _label(), COLORS)
    assert list(tmp_path.iterdir()) == []


def test_save_label_png_failure_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "m.png"
    old = _label(seed=3)
    viz.save_label_png(p, old, COLORS)
    before = p.read_bytes()

    def boom(self, *a, **k):
        # write part of a file first, like a crash mid-save would
        with open(a[0], "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        viz.save_label_png(p, _label(seed=4), COLORS)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert _tmp_leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["m.png"]


def test_read_label_png_grayscale_and_errors(tmp_path):
    lab = _label()
    Image.fromarray(lab).save(tmp_path / "gray.png")
    assert (viz.read_label_png(tmp_path / "gray.png") == lab).all()
    Image.fromarray(_image()).save(tmp_path / "rgb.png")
    with pytest.raises(PixelsegError, match="rgb.png"):
        viz.read_label_png(tmp_path / "rgb.png")
    with pytest.raises(PixelsegError, match="not found"):
        viz.read_label_png(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(PixelsegError, match="bad.png"):
        viz.read_label_png(tmp_path / "bad.png")


# ------------------------------------------------------------------------------------- overlay

def test_overlay_alpha_zero_is_the_image():
    img, lab = _image(), _blocks()
    out = viz.overlay(img, lab, COLORS, alpha=0.0, boundaries=False)
    assert out.dtype == np.uint8 and (out == img).all()


def test_overlay_alpha_one_is_the_colors_away_from_boundaries():
    img, lab = _image(), _blocks()
    out = viz.overlay(img, lab, COLORS, alpha=1.0, boundaries=False)
    assert (out == viz.colorize(lab, COLORS)).all()
    # with boundaries on, interiors are unchanged and edges are drawn in the class colors
    out_b = viz.overlay(img, lab, COLORS, alpha=0.5, boundaries=True)
    half = viz.overlay(img, lab, COLORS, alpha=0.5, boundaries=False)
    assert (out_b[5:25, 5:35] == half[5:25, 5:35]).all()
    edge = out_b[29:31, 10]
    assert (edge != half[29:31, 10]).any()
    assert (edge == viz.colorize(lab, COLORS)[29:31, 10]).all()


def test_overlay_half_alpha_blends():
    img, lab = _image(), _blocks()
    out = viz.overlay(img, lab, COLORS, alpha=0.5, boundaries=False).astype(int)
    expect = (img.astype(int) + viz.colorize(lab, COLORS).astype(int)) / 2
    assert np.abs(out - expect).max() <= 1


def test_overlay_ignore_pixels_unchanged():
    img, lab = _image(), _blocks()
    lab[10:20, 10:20] = 255
    for boundaries in (False, True):
        out = viz.overlay(img, lab, COLORS, alpha=0.7, boundaries=boundaries)
        assert (out[10:20, 10:20] == img[10:20, 10:20]).all()
        assert (out[40:50, 50:60] != img[40:50, 50:60]).any()


def test_overlay_gray_and_rgba_inputs():
    lab = _blocks()
    gray = _image()[:, :, 0]
    out = viz.overlay(gray, lab, COLORS, alpha=0.0)
    assert out.shape == (60, 80, 3)
    assert (out[5:25, 5:35] == gray[5:25, 5:35, None]).all()
    rgba = np.dstack([_image(), np.full((60, 80), 128, np.uint8)])
    out = viz.overlay(rgba, lab, COLORS, alpha=0.0, boundaries=False)
    assert out.shape == (60, 80, 3) and (out == rgba[:, :, :3]).all()


def test_overlay_checks_inputs():
    with pytest.raises(ValueError, match="same size"):
        viz.overlay(_image(), _blocks(30, 30), COLORS)
    with pytest.raises(ValueError, match="uint8"):
        viz.overlay(_image().astype(np.float32), _blocks(), COLORS)
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(_image(), _blocks(), COLORS, alpha=1.5)


# -------------------------------------------------------------------------------------- legend

def _colors_in(region):
    flat = region.reshape(-1, 3).astype(np.int64)
    return set(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]).tolist())


def _contains_color(region, color):
    r, g, b = color
    return (r << 16 | g << 8 | b) in _colors_in(region)


def test_add_legend_right_of_tall_image():
    img = np.full((200, 150, 3), 128, np.uint8)
    names = ["background", "road", "car", "person"]
    out = viz.add_legend(img, names, COLORS, [0, 1, 3], extra={0: "50.0%", 1: "30.0%", 3: "20.0%"})
    assert out.shape[0] >= 200 and out.shape[1] > 150
    assert (out[:200, :150] == img).all()
    panel = out[:, 150:]
    for i in (0, 1, 3):
        assert _contains_color(panel, COLORS[i])
    assert not _contains_color(panel, COLORS[2])


def test_add_legend_below_wide_image():
    img = np.full((100, 400, 3), 128, np.uint8)
    out = viz.add_legend(img, ["a", "b", "c", "d"], COLORS, range(4))
    assert out.shape[0] > 100 and out.shape[1] == 400
    panel = out[100:]
    for c in COLORS:
        assert _contains_color(panel, c)


@pytest.mark.parametrize("size", [64, 600, 4000])
def test_add_legend_many_classes_fit(size):
    table = ClassTable.derive(40)
    img = np.full((size, size, 3), 128, np.uint8)
    out = viz.add_legend(img, table.names, table.colors, range(40),
                         extra={i: f"{100 / 40:.1f}%" for i in range(40)})
    assert out.shape[1] > size
    present = _colors_in(out[:, size:])
    # 40 rows in one column would be 40 * 1.5 font sizes tall: they must wrap instead
    assert out.shape[0] < 40 * 1.5 * viz._font_size(size, size)
    for r, g, b in table.colors:
        assert (r << 16 | g << 8 | b) in present


def test_add_legend_rejects_unknown_ids_and_allows_none():
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError):
        viz.add_legend(img, ["a", "b"], COLORS[:2], [5])
    assert (viz.add_legend(img, ["a", "b"], COLORS[:2], []) == img).all()


def test_font_scales_with_image():
    assert viz._font_size(64, 64) >= 12
    assert viz._font_size(4000, 4000) > 5 * viz._font_size(256, 256)


# --------------------------------------------------------------------------------- save_overlay

@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_save_overlay_writes_with_legend(tmp_path, suffix):
    table = ClassTable(("bg", "a", "b", "c"), tuple(COLORS))
    img, lab = _image(), _blocks()
    lab[:, :5] = 255
    p = tmp_path / f"ov{suffix}"
    viz.save_overlay(p, img, lab, table)
    with Image.open(p) as im:
        assert im.mode == "RGB"
        assert im.width > 80 or im.height > 60
    viz.save_overlay(tmp_path / "plain.png", img, lab, table, legend=False)
    with Image.open(tmp_path / "plain.png") as im:
        assert im.size == (80, 60)
    assert _tmp_leftovers(tmp_path) == []
    with pytest.raises(ValueError):
        viz.save_overlay(tmp_path / "ov.gif", img, lab, table)


# --------------------------------------------------------------------------------- side_by_side

def test_side_by_side_shapes():
    a = _image(60, 80)
    b = viz.colorize(_blocks(60, 50), COLORS)
    c = _image(30, 40)[:, :, 0]                    # gray, half height: scaled up to 60
    out = viz.side_by_side([a, b, c], ["image", "ground truth", "prediction"])
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[1] >= 80 + 50 + 80
    assert out.shape[0] > 60                       # title bar on top
    title_h = out.shape[0] - 60
    assert (out[title_h:, :80] == a).all()
    with pytest.raises(ValueError):
        viz.side_by_side([a, b], ["one"])


def test_png8_encoding():
    v = np.array([[0.0, 0.5, 1.0], [np.nan, 0.2, 1.2]])
    out = viz.to_png8(v)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 128, 255], [0, 51, 255]])
    x = np.random.default_rng(0).random((50, 50))
    assert np.abs(viz.to_png8(x) / 255.0 - x).max() <= 1 / 510 + 1e-9
    np.testing.assert_array_equal(viz.to_png8(torch.from_numpy(x)), viz.to_png8(x))
