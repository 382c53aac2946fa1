"""The notebook API as a user meets it: dir(pixelseg), pixelseg.predict on every kind of input, and the Result
(.labels, .probs, .overlay, .save, .plot, .to_json, and the reprs Jupyter calls)."""
from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixelseg
from pixelseg.data.classes import ClassTable
from pixelseg.errors import PixelsegError
from pixelseg.models import build_model
from pixelseg.inference.results import Result
from pixelseg.run.folder import Preprocessing, RunFolder, RunInfo
from pixelseg.viz.overlay import read_label_png

CLASSES = ClassTable(("background", "road <main>", "car"), ((0, 0, 0), (128, 64, 128), (0, 0, 142)))


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread) -> Path:
    path = tmp_path_factory.mktemp("runs") / "exp1"
    path.mkdir()
    torch.manual_seed(0)
    rf = RunFolder(path)
    rf.write_info(RunInfo(path, "lraspp", None, CLASSES, Preprocessing((32, 32), (123.7, 116.3, 103.5),
                                                                      (58.4, 57.1, 57.4), 3), {"epoch": 1}))
    rf.save_weights(build_model("lraspp", 3, 3, None).eval())
    rf.write_classes(CLASSES)
    return path


@pytest.fixture(scope="module")
def predictor(run):
    return pixelseg.load(run, device="cpu", backend="torch")


def _images(n=3, h=24, w=40):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w + 8 * i, 3), dtype=np.uint8) for i in range(n)]


def test_dir_shows_the_api_and_import_stays_light():
    names = dir(pixelseg)
    for name in ("train", "load", "predict", "evaluate", "compare", "push", "pull", "Result", "Predictor",
                 "PixelsegError"):
        assert name in names, name
        assert getattr(pixelseg, name) is not None
    assert pixelseg.Result is Result
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pixelseg.nope
    code = "import sys, pixelseg; dir(pixelseg); print(sorted(m for m in ('torch', 'numpy', 'huggingface_hub') if m in sys.modules))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(Path(pixelseg.__file__).parents[1]), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_predict_takes_paths_lists_folders_and_arrays(run, predictor, tmp_path):
    images = _images()
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"p{i}.png")
    expected = [predictor.predict(im) for im in images]

    by_folder = pixelseg.predict(predictor, folder)
    by_list = pixelseg.predict(run, [folder / "p0.png", str(folder / "p1.png")], device="cpu", backend="torch")
    by_path = pixelseg.predict(predictor, folder / "p2.png")
    assert [r.name for r in by_folder] == ["p0", "p1", "p2"]
    assert [r.source for r in by_list] == [folder / "p0.png", folder / "p1.png"]
    for r, e in zip(by_folder, expected):
        np.testing.assert_array_equal(r.labels, e)
    np.testing.assert_array_equal(by_list[1].labels, expected[1])
    np.testing.assert_array_equal(by_path[0].labels, expected[2])

    hwc = pixelseg.predict(predictor, images)
    chw = pixelseg.predict(predictor, [np.moveaxis(im, -1, 0) for im in images])       # as torch gives them
    batch = pixelseg.predict(predictor, np.stack([images[0], images[0]]))               # N x H x W x C
    tensor = pixelseg.predict(predictor, torch.from_numpy(np.moveaxis(images[1], -1, 0).copy()))
    assert [r.name for r in hwc] == ["image_0", "image_1", "image_2"]
    for got in (hwc, chw):
        for r, e in zip(got, expected):
            assert r.labels.shape == e.shape
            np.testing.assert_array_equal(r.labels, e)
    assert len(batch) == 2 and all((r.labels == expected[0]).all() for r in batch)
    np.testing.assert_array_equal(tensor[0].labels, expected[1])
    np.testing.assert_array_equal(chw[0].image, images[0])           # kept channels last for the overlay


def test_ambiguous_and_wrong_inputs_say_how(predictor, tmp_path):
    with pytest.raises(PixelsegError, match=r"shape \(3, 8, 4\) reads as channels first and channels last; "
                                            r"pass it as HxWxC \(np\.moveaxis"):
        pixelseg.predict(predictor, np.zeros((3, 8, 4), np.uint8))
    with pytest.raises(PixelsegError, match=r"shape \(5, 6, 7\): no dimension of 1, 3 or 4 channels"):
        pixelseg.predict(predictor, np.zeros((5, 6, 7), np.uint8))
    with pytest.raises(PixelsegError, match="missing.png: not found"):
        pixelseg.predict(predictor, tmp_path / "missing.png")
    with pytest.raises(PixelsegError, match="nothing to predict"):
        pixelseg.predict(predictor, [])


def test_probs_are_computed_on_request(predictor, monkeypatch):
    image = _images(1)[0]
    (r,) = pixelseg.predict(predictor, image)
    calls = []
    real = predictor.probs
    monkeypatch.setattr(predictor, "probs", lambda ims: calls.append(1) or real(ims))
    assert calls == []
    probs = r.probs
    assert probs.shape == (3,) + image.shape[:2] and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), r.labels)
    assert r.probs is probs and calls == [1]                        # once, then kept


def _known_result(h=30, w=48) -> Result:
    labels = np.zeros((h, w), np.uint8)
    labels[h // 2:, : w // 2] = 1
    labels[h // 2:, w // 2:] = 2
    labels[0, 0] = 255                                               # one ignored pixel
    image = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Result(image, labels, CLASSES, name="street")


def test_overlay_save_and_json(tmp_path):
    r = _known_result()
    assert r.overlay(0.0, boundaries=False).tolist() == r.image.tolist()
    full = r.overlay(1.0, boundaries=False)
    assert tuple(full[-1, -1]) == CLASSES.colors[2] and tuple(full[0, 0]) == tuple(r.image[0, 0])   # ignore: image
    label_png, overlay_png = r.save(tmp_path / "out")
    assert (label_png.name, overlay_png.name) == ("street.png", "street_overlay.png")
    np.testing.assert_array_equal(read_label_png(label_png), r.labels)
    assert Image.open(overlay_png).size[1] >= 30
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["street.png", "street_overlay.png"]   # no temp files
    (tmp_path / "file").write_text("x")
    with pytest.raises(PixelsegError, match="is a file; give a folder"):
        r.save(tmp_path / "file")

    data = json.loads(r.to_json())
    assert (data["height"], data["width"], data["name"]) == (30, 48, "street")
    assert [(c["index"], c["name"]) for c in data["classes"]] == [(0, "background"), (1, "road <main>"), (2, "car")]
    assert sum(c["pixels"] for c in data["classes"]) == 30 * 48 - 1
    assert data["classes"][2] == {"index": 2, "name": "car", "color": [0, 0, 142], "pixels": 15 * 24,
                                  "share": 0.25}


def test_jupyter_reprs_show_the_picture_and_the_classes():
    r = _known_result()
    png = r._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    im = Image.open(io.BytesIO(png))
    assert im.size == Image.fromarray(r._legend_picture()).size and im.size[0] >= 48 and im.size[1] >= 30
    big = Result(np.zeros((600, 2000, 3), np.uint8), np.zeros((600, 2000), np.uint8), CLASSES, name="big")
    assert max(Image.open(io.BytesIO(big._repr_png_())).size) == 1024           # shown smaller, data kept

    page = r._repr_html_()
    (src,) = re.findall(r"<img src='data:image/png;base64,([^']+)'", page)
    assert base64.b64decode(src) == png
    assert "road &lt;main&gt;" in page and "<main>" not in page        # names escaped
    assert "background" in page and "car" in page and "25.0%" in page
    assert "street (48x30)" in page


def test_plot_is_a_figure_with_image_overlay_and_legend():
    from matplotlib.figure import Figure
    r = _known_result()
    fig = r.plot()
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["image", "prediction"]
    assert [ax.images[0].get_array().shape[:2] for ax in fig.axes] == [(30, 48), (30, 48)]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["background 49.9%", "road <main> 25.0%", "car 25.0%"]
