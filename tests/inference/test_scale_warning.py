"""An input far from the training images' size is said, with the fix (predict CLI, API, serve); tile=True on a
run trained by whole-image resize runs its windows at the training scale."""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from pixelseg.cli.main import main
from pixelseg.errors import PixelsegWarning
from pixelseg.inference.bench import model_run
from pixelseg.inference.predictor import Predictor
from pixelseg.run.folder import Preprocessing, RunFolder


@pytest.fixture(scope="module")
def shrunk_run(tmp_path_factory):
    """A 64x64 run whose training images were 256x256 (shrunk 4x on the way in)."""
    folder = model_run("unet", (64, 64), 3, tmp_path_factory.mktemp("shrunk") / "run", encoder="resnet18")
    info = RunFolder(folder).info()
    RunFolder(folder).write_info(replace(info, preprocessing=replace(info.preprocessing, source_size=(256, 256))))
    return folder


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_source_size_round_trips_and_gives_the_training_scale(shrunk_run):
    pre = RunFolder(shrunk_run).info().preprocessing
    assert pre.source_size == (256, 256) and pre.stretch_scale == pytest.approx(0.25)
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    old = Preprocessing.from_dict({k: v for k, v in pre.to_dict().items() if k != "source_size"})
    assert old.source_size is None and old.stretch_scale is None      # runs from before say nothing


def test_a_far_larger_input_warns_once_per_size_with_the_fix(shrunk_run):
    p = Predictor(shrunk_run, "cpu")
    assert p.scale_warning((300, 200)) is None                        # close to 256x256
    msg = p.scale_warning((2048, 1536))
    assert msg and "6.9x larger than the training images (median 256x256)" in msg and "--tile" in msg
    assert "smaller than the training images" in p.scale_warning((64, 48))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p.predict_batch([_image(1024, 1024), _image(1024, 1024, 1), _image(256, 256)])
    found = [w for w in caught if issubclass(w.category, PixelsegWarning)]
    assert len(found) == 1 and "1024x1024 is 4.0x larger" in str(found[0].message)
    assert p.scale_warnings() == [f"an image (and 1 more of that size): {p.scale_warning((1024, 1024))}"]
    assert Predictor(shrunk_run, "cpu", tile=True).scale_warning((2048, 1536)) is None   # windows asked for


@pytest.mark.slow
def test_tile_true_runs_windows_at_the_training_scale(shrunk_run):
    """tile=True on a run whose images were shrunk 4x: the image is shrunk 4x too and windowed at the training
    size, which is the run-at-a-scale path with scale 0.25 (not 64 px windows at native resolution)."""
    image = _image(512, 512)
    tiled = Predictor(shrunk_run, "cpu", tile=True).predict(image)
    info = RunFolder(shrunk_run).info()
    as_scale = replace(info.preprocessing, resize="scale", scale=0.25, source_size=None)
    RunFolder(shrunk_run).write_info(replace(info, preprocessing=as_scale))
    try:
        expected = Predictor(shrunk_run, "cpu", tile=True).predict(image)
    finally:
        RunFolder(shrunk_run).write_info(info)
    np.testing.assert_array_equal(tiled, expected)
    native = Predictor(shrunk_run, "cpu", tile=(64, 64)).predict(image)   # explicit windows: native resolution
    assert (native != tiled).any()


@pytest.mark.slow
def test_predict_cli_prints_the_warning(shrunk_run, tmp_path, capsys):
    Image.fromarray(_image(1024, 1024)).save(tmp_path / "big.png")
    Image.fromarray(_image(256, 256)).save(tmp_path / "ok.png")
    assert main(["predict", str(shrunk_run), str(tmp_path / "big.png"), str(tmp_path / "ok.png"),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("warning:") == 1 and "big.png: 1024x1024 is 4.0x larger" in err


def test_predictor_repr_says_what_it_runs(shrunk_run):
    r = repr(Predictor(shrunk_run, "cpu", backend="torch", tile=True))
    assert r.startswith(f"Predictor({str(shrunk_run)!r}, model=unet/resnet18, classes=[class0, class1, class2]")
    assert "resized to 64x64 (trained from ~256x256)" in r and "backend=torch" in r and "tile=(64, 64)" in r


def test_the_warnings_kept_are_bounded_for_a_long_lived_server(shrunk_run):
    from pixelseg.inference.predictor import MAX_SCALE_NOTES
    p = Predictor(shrunk_run, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for side in range(1000, 1000 + 3 * MAX_SCALE_NOTES):
            p._check_scale((side, side), "upload")
        p._check_scale((256, 256), "upload")                 # close to the training size: nothing kept
    assert len(p.scale_notes) == MAX_SCALE_NOTES
