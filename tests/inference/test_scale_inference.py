"""Inference at the training scale: whole or by windows, labels at the original size; old runs unchanged."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pixelseg.data.preprocess import preprocess
from pixelseg.deploy.metadata import description, info_from_meta
from pixelseg.models import windows
from pixelseg.inference import tiling
from pixelseg.inference.predictor import Predictor
from pixelseg.models.outputs import resize_logits
from pixelseg.run.folder import Preprocessing, RunFolder, RunInfo


@pytest.fixture(scope="module")
def scale_run(make_scale_run):
    return make_scale_run("scale", 0.5)


def _scene(h=256, w=192):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
    image[20:120, 10:90] = (230, 30, 30)
    image[140:240, 100:180] = (30, 210, 60)
    return image


def test_model_json_and_exported_metadata_round_trip_scale_and_crop(scale_run):
    d = json.loads((scale_run / "model.json").read_text())["preprocessing"]
    assert d["resize"] == "scale" and d["scale"] == 0.5 and d["crop"] == [64, 64]
    info = RunFolder(scale_run).info()
    assert info.preprocessing.scale == 0.5 and info.preprocessing.image_size == (64, 64)
    back = info_from_meta(json.loads(json.dumps(description(info, format="onnx"))), scale_run / "m.onnx")
    assert back.preprocessing == info.preprocessing


def test_labels_come_back_at_the_original_size_and_whole_and_tiled_agree(scale_run, monkeypatch):
    image = _scene()
    whole = Predictor(scale_run, device="cpu").predict(image)
    tiled = Predictor(scale_run, device="cpu", tile=True, overlap=0.5).predict(image)
    assert whole.shape == tiled.shape == image.shape[:2]
    assert (whole == tiled).mean() > 0.9
    # over the memory budget the predictor slides the training crop by itself, at the training scale
    monkeypatch.setitem(windows.WHOLE_PIXELS, "cpu", 32 * 32)
    auto = Predictor(scale_run, device="cpu", overlap=0.5).predict(image)
    assert np.array_equal(auto, tiled)


def test_scale_mode_sees_the_image_at_the_scale(scale_run):
    """The whole-image path equals the model run on the image resized by the scale, logits resized back."""
    p = Predictor(scale_run, device="cpu")
    image = _scene(200, 120)
    info = RunFolder(scale_run).info()
    x = tiling.scaled_input(image, info.preprocessing)
    assert tuple(x.shape[1:]) == (96, 64)          # 100x60 at scale 0.5, sides to multiples of 32
    with torch.inference_mode():
        ref = resize_logits(info.load_model()(x[None]), (200, 120))[0].argmax(0).numpy()
    assert np.array_equal(p.predict(image), ref)


def test_a_run_of_the_old_kind_predicts_exactly_as_before(random_run, scene):
    d = json.loads((random_run / "model.json").read_text())["preprocessing"]
    assert set(d) == {"image_size", "mean", "std", "in_channels", "resize"} and d["resize"] == "stretch"
    info = RunFolder(random_run).info()
    assert Preprocessing.from_dict(d).to_dict() == d
    big = np.kron(scene, np.ones((3, 2, 1), np.uint8))                   # 192x128: resized to 64x64 and back
    with torch.inference_mode():
        ref = resize_logits(info.load_model()(preprocess(big, info.preprocessing)[None]), big.shape[:2])[0]
    assert np.array_equal(Predictor(random_run, device="cpu").predict(big), ref.argmax(0).numpy())


@pytest.mark.slow
def test_an_exported_scale_run_predicts_at_the_scale_too(scale_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from pixelseg.deploy.export import export_run
    from pixelseg.deploy.metadata import read_exported
    out = export_run(scale_run, "onnx", tmp_path / "m.onnx", log=lambda *a, **k: None).path
    assert read_exported(out).preprocessing == RunFolder(scale_run).info().preprocessing
    image = _scene(200, 120)
    exported = Predictor(out, device="cpu", backend="onnxruntime").predict(image)
    assert (exported == Predictor(scale_run, device="cpu").predict(image)).mean() > 0.99


@pytest.mark.slow
def test_evaluation_slides_the_training_crop_over_images_over_the_budget(scale_run, monkeypatch, tmp_path):
    """evaluate/report/validation of a run trained at a scale: an image whose scaled size is over the
    whole-image budget is scored by windows of the training crop (the network never sees more), its labels
    are predict's, and val images of different sizes go through one loader (a batch holds one image)."""
    from PIL import Image

    import pixelseg
    from pixelseg.reports.analysis import analyze_run
    images = {"a": _scene(256, 192), "b": _scene(200, 330)}
    for split in ("train", "val"):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "masks").mkdir(parents=True)
        for stem, image in images.items():
            Image.fromarray(image).save(tmp_path / split / "images" / f"{stem}.png")
            mask = np.zeros(image.shape[:2], np.uint8)
            mask[20:120, 10:90] = 1
            Image.fromarray(mask).save(tmp_path / split / "masks" / f"{stem}.png")
    names = list(RunFolder(scale_run).info().classes.names)
    (tmp_path / "classes.json").write_text(json.dumps({"names": names}))
    monkeypatch.setitem(windows.WHOLE_PIXELS, "cpu", 48 * 48)
    model_inputs = []
    real_load = RunInfo.load_model

    def spying_load(info, device="cpu"):
        m = real_load(info, device)
        m.register_forward_pre_hook(lambda mod, args: model_inputs.append(tuple(args[0].shape[-2:])))
        return m
    monkeypatch.setattr(RunInfo, "load_model", spying_load)
    analysis = analyze_run(scale_run, tmp_path, "val", device="cpu", batch_size=4)
    assert model_inputs and max(h * w for h, w in model_inputs) <= 64 * 64     # windows of the 64x64 crop only
    predicted = {stem: Predictor(scale_run, device="cpu").predict(image) for stem, image in images.items()}
    metrics = pixelseg.evaluate(scale_run, tmp_path, device="cpu")
    cm = np.zeros((3, 3), np.int64)
    for stem in ("a", "b"):                 # the evaluate metrics are those of predict's labels
        gt = np.asarray(Image.open(tmp_path / "val" / "masks" / f"{stem}.png")).astype(np.int64)
        np.add.at(cm, (gt.ravel(), predicted[stem].astype(np.int64).ravel()), 1)
    acc = np.trace(cm) / cm.sum()
    assert metrics["pixel_accuracy"] == pytest.approx(acc, abs=0.01)
    assert analysis is not None
