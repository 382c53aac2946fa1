"""Reading images and masks: pixel values as stored, channel conversion, and one-line errors naming the file."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pixelseg.data.io import image_channels, image_size, read_image, read_mask, to_channels
from pixelseg.errors import PixelsegError

RNG = np.random.default_rng(0)


def _one_line_naming(err: PixelsegError, path) -> str:
    msg = str(err)
    assert str(path) in msg
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ---------------------------------------------------------------- masks

def test_palette_mask_values_are_indices_not_colors(tmp_path):
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 200, 10, 30, 5, 250, 90] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "P"
    out = read_mask(tmp_path / "m.png")
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, idx)


def test_8bit_gray_mask(tmp_path):
    m = np.array([[0, 3, 255], [7, 1, 0]], np.uint8)
    Image.fromarray(m).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, m)


def test_16bit_mask_keeps_values_above_255(tmp_path):
    m = np.array([[0, 300, 1000], [65535, 256, 2]], np.uint16)
    Image.fromarray(m).save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode.startswith("I;16")
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, m)


def test_1bit_mask_reads_as_0_and_1(tmp_path):
    m = np.array([[0, 1, 1], [1, 0, 0]], bool)
    Image.fromarray(m).save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "1"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), m.astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_gray_mask_saved_as_rgb_is_accepted(tmp_path, mode):
    m = np.array([[0, 1, 2, 255], [3, 3, 0, 1]], np.uint8)
    a = np.stack([m] * 3 + ([np.full_like(m, 255)] if mode == "RGBA" else []), axis=2)
    Image.fromarray(a, mode=mode).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.shape == m.shape
    np.testing.assert_array_equal(out, m)


def test_color_coded_rgb_mask_is_rejected(tmp_path):
    a = np.zeros((4, 4, 3), np.uint8)
    a[:2] = (255, 0, 0)
    a[2:] = (0, 128, 0)
    p = tmp_path / "color.png"
    Image.fromarray(a).save(p)
    with pytest.raises(PixelsegError) as ei:
        read_mask(p)
    msg = _one_line_naming(ei.value, p)
    assert "color" in msg and "index" in msg


def test_color_channel_picks_blue_for_keras(tmp_path):
    blue = np.array([[0, 1], [2, 1]], np.uint8)
    a = np.stack([np.full_like(blue, 77), np.full_like(blue, 9), blue], axis=2)  # R, G, B
    Image.fromarray(a).save(tmp_path / "k.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "k.png", color_channel=2), blue)
    np.testing.assert_array_equal(read_mask(tmp_path / "k.png", color_channel=0), np.full_like(blue, 77))


def _png_bytes(tmp_path, shape=(32, 32, 3)):
    p = tmp_path / "full.png"
    Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8)).save(p)
    return p.read_bytes()


def _jpg_bytes(tmp_path):
    p = tmp_path / "full.jpg"
    Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p, quality=90)
    return p.read_bytes()


@pytest.mark.parametrize("kind", ["png-half", "png-header", "jpg-half", "text"])
@pytest.mark.parametrize("reader", [read_mask, read_image])
def test_corrupt_files_fail_with_one_line_naming_the_file(tmp_path, kind, reader):
    if kind == "png-half":
        data = _png_bytes(tmp_path, (32, 32))
        p, data = tmp_path / "bad.png", data[: len(data) // 2]
    elif kind == "png-header":
        p, data = tmp_path / "bad.png", _png_bytes(tmp_path, (32, 32))[:20]
    elif kind == "jpg-half":
        data = _jpg_bytes(tmp_path)
        p, data = tmp_path / "bad.jpg", data[: len(data) // 2]
    else:
        p, data = tmp_path / "notes.png", b"this is a text file, not an image\n"
    p.write_bytes(data)
    with pytest.raises(PixelsegError) as ei:
        reader(p)
    msg = _one_line_naming(ei.value, p)
    assert "remove it" in msg or "re-export" in msg


def test_missing_mask_names_the_file_and_the_fix(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(PixelsegError) as ei:
        read_mask(p)
    msg = _one_line_naming(ei.value, p)
    assert "not found" in msg


def test_header_readers_on_a_corrupt_file(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello")
    for fn in (image_size, image_channels):
        with pytest.raises(PixelsegError) as ei:
            fn(p)
        _one_line_naming(ei.value, p)


# ---------------------------------------------------------------- images

def test_read_image_modes(tmp_path):
    g = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    rgba = RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")

    out = read_image(tmp_path / "g.png")
    assert out.shape == (5, 7, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], g)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba)
    assert image_size(tmp_path / "rgb.png") == (5, 7)
    assert [image_channels(tmp_path / f) for f in ("g.png", "rgb.png", "rgba.png")] == [1, 3, 4]


def test_16bit_grayscale_image_is_scaled_to_8bit(tmp_path):
    a = np.array([[0, 257, 32896], [65535, 1000, 514]], np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (2, 3, 1)
    np.testing.assert_array_equal(out[:, :, 0], np.round(a / 257.0).astype(np.uint8))


def test_channel_conversion_values(tmp_path):
    g = np.array([[10, 200], [0, 255]], np.uint8)
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [100, 100, 100]]], np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full((2, 2, 1), 17, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")

    g3 = read_image(tmp_path / "g.png", channels=3)
    assert g3.shape == (2, 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(g3[:, :, c], g)
    g4 = read_image(tmp_path / "g.png", channels=4)
    np.testing.assert_array_equal(g4[:, :, :3], g3)
    assert (g4[:, :, 3] == 255).all()

    lum = read_image(tmp_path / "rgb.png", channels=1)
    assert lum.shape == (2, 2, 1)
    np.testing.assert_array_equal(lum[:, :, 0], [[76, 150], [29, 100]])  # 0.299 / 0.587 / 0.114 weights
    r4 = read_image(tmp_path / "rgb.png", channels=4)
    np.testing.assert_array_equal(r4[:, :, :3], rgb)
    assert (r4[:, :, 3] == 255).all()

    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png", channels=3), rgb)  # alpha dropped
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png", channels=1)[:, :, 0], [[76, 150], [29, 100]])


def test_to_channels_unsupported_raises_value_error():
    with pytest.raises(ValueError):
        to_channels(np.zeros((2, 2, 2), np.uint8), 3)
    assert to_channels(np.zeros((2, 2), np.uint8), 1).shape == (2, 2, 1)
