"""One decode gate for every reader: a file whose header declares more pixels than the limit is refused
from its header, with its name, its declared size and the limit, fast and without decoding anything."""
from __future__ import annotations

import json
import resource
import time

import numpy as np
import pytest
from PIL import Image

from pixelseg.data import io as dio
from pixelseg.errors import PixelsegError
from pixelseg.testing import bomb_jpeg, bomb_png

from tests.helpers import dataset_makers as M


BOMBS = {"bomb.png": (bomb_png(), "100000x100000"), "bomb.jpg": (bomb_jpeg(), "65500x65500")}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def refused(fn, path, declared: str) -> str:
    """fn(path) must raise a one-line PixelsegError naming the file, the declared size, the limit and the
    fix, within a second and without growing the process (a decode would need 10-30 GB)."""
    before, t0 = _rss_mb(), time.perf_counter()
    with pytest.raises(PixelsegError) as e:
        fn(path)
    assert time.perf_counter() - t0 < 1.0
    assert _rss_mb() - before < 200
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and declared in msg, msg
    assert f"{dio.max_pixels():,}" in msg and "--max-pixels" in msg, msg
    return msg


@pytest.fixture(params=sorted(BOMBS))
def bomb(request, tmp_path):
    data, declared = BOMBS[request.param]
    path = tmp_path / request.param
    path.write_bytes(data)
    assert path.stat().st_size < 2000
    return path, declared


@pytest.mark.parametrize("reader", ["read_image", "read_mask", "image_size", "image_channels"])
def test_every_io_reader_refuses_a_bomb_from_its_header(bomb, reader):
    path, declared = bomb
    refused(getattr(dio, reader), path, declared)


def test_pillows_own_check_stays_on():
    assert Image.MAX_IMAGE_PIXELS is not None


def test_the_limit_is_a_setting(bomb, monkeypatch):
    path, _ = bomb
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)   # restored after the test
    monkeypatch.delenv(dio.MAX_PIXELS_ENV, raising=False)
    dio.set_max_pixels(20_000_000_000)
    try:
        assert dio.max_pixels() == 20_000_000_000
        h, w = dio.image_size(path)           # the header is read, nothing decoded: allowed now
        assert h * w > dio.DEFAULT_MAX_PIXELS
        assert Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS >= 20_000_000_000
    finally:
        dio.set_max_pixels(None)
    assert dio.max_pixels() == dio.DEFAULT_MAX_PIXELS
    monkeypatch.setenv(dio.MAX_PIXELS_ENV, "100")      # what a CLI flag sets for the loader workers too
    small = path.parent / "small.png"
    Image.new("RGB", (20, 10)).save(small)
    with pytest.raises(PixelsegError, match="20x10 = 200 pixels, above the limit of 100"):
        dio.read_image(small)
    monkeypatch.setenv(dio.MAX_PIXELS_ENV, "lots")
    with pytest.raises(PixelsegError, match=dio.MAX_PIXELS_ENV):
        dio.read_image(small)


def _folder_with(root, image_bytes=None, mask_bytes=None, ext=".png"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"names": ["bg", "fg"]}))
    for split in ("train", "val"):
        for k in range(2):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            M.image(root / split / "images" / f"{split}{k}.png", k)
            M.save_gray(root / split / "masks" / f"{split}{k}.png", M.blocks(k, [0, 1]))
    if image_bytes is not None:
        (root / "train" / "images" / "train0.png").unlink()
        (root / "train" / "images" / f"train0{ext}").write_bytes(image_bytes)
        return root / "train" / "images" / f"train0{ext}"
    (root / "train" / "masks" / "train0.png").write_bytes(mask_bytes)
    return root / "train" / "masks" / "train0.png"


@pytest.mark.parametrize("where", ["image", "mask"])
def test_doctor_precheck_and_convert_refuse_a_bomb(tmp_path, where):
    from pixelseg.data.tools.checks import require_clean
    from pixelseg.data.tools.convert import convert
    from pixelseg.data.tools.doctor import diagnose
    from pixelseg.data.formats import open_dataset

    data = bomb_png()
    path = _folder_with(tmp_path / "ds", **({"image_bytes": data} if where == "image" else {"mask_bytes": data}))
    before, t0 = _rss_mb(), time.perf_counter()
    rep = diagnose(tmp_path / "ds", workers=2)
    assert any(str(path) in p and "100000x100000" in p for p in rep.problems), rep.problems
    with pytest.raises(PixelsegError, match="100000x100000"):
        require_clean(open_dataset(tmp_path / "ds"))
    with pytest.raises(PixelsegError, match="100000x100000"):
        convert(tmp_path / "ds", tmp_path / "out", workers=1)
    assert time.perf_counter() - t0 < 5 and _rss_mb() - before < 300


def test_predictor_and_show_refuse_a_bomb(tmp_path):
    from pixelseg.data.preprocess import list_inputs
    from pixelseg.data.tools.show import show

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.png").write_bytes(bomb_png())
    assert list_inputs([tmp_path / "in"]) == [tmp_path / "in" / "b.png"]
    # the Predictor decodes paths with read_image (predict_paths and _as_array): covered by read_image above
    path = _folder_with(tmp_path / "ds", image_bytes=bomb_png())
    with pytest.raises(PixelsegError, match="100000x100000") as e:
        show(tmp_path / "ds", tmp_path / "grid.png", n=4)
    assert str(path) in str(e.value)
    assert not (tmp_path / "grid.png").exists()


def test_server_decodes_uploads_through_the_same_gate():
    serve_decode = pytest.importorskip("pixelseg.serve.decode")
    from pixelseg.serve.errors import ApiError
    from pixelseg.serve.settings import Limits

    for data, declared in BOMBS.values():
        with pytest.raises(ApiError) as e:
            serve_decode.decode_image(data, None, Limits(max_pixels=4096 * 4096))
        assert e.value.status == 413 and declared in str(e.value.message)


def test_server_and_read_image_agree_on_palette_transparency_and_exif(tmp_path):
    serve_decode = pytest.importorskip("pixelseg.serve.decode")
    from pixelseg.serve.settings import Limits

    p = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4), mode="P")
    p.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    p.info["transparency"] = 3
    p.save(tmp_path / "pal.png", transparency=3)
    upright = np.random.default_rng(0).integers(0, 256, (40, 24, 3), np.uint8)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)   # what the camera stored
    exif = Image.Exif()
    exif[0x0112] = 6                                                          # "rotate 90 CW to view"
    stored.save(tmp_path / "phone.png", exif=exif)
    for name in ("pal.png", "phone.png"):
        data = (tmp_path / name).read_bytes()
        a = dio.read_image(tmp_path / name)
        b = serve_decode.decode_image(data, "image/png", Limits())
        np.testing.assert_array_equal(a.reshape(b.shape), b)
    assert dio.read_image(tmp_path / "pal.png").shape == (3, 4, 4)            # transparency kept as alpha
    np.testing.assert_array_equal(dio.read_image(tmp_path / "phone.png"), upright)
    assert dio.image_size(tmp_path / "phone.png") == (40, 24)
