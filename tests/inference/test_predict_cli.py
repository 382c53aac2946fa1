"""`pixelseg predict` with backends, tiles and TTA; video in -> overlaid video out; `pixelseg bench`."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from pixelseg.viz import overlay as viz
from pixelseg.cli import main
from pixelseg.inference.tta import TTA
from pixelseg.inference.predictor import Predictor
from pixelseg.viz.overlay import read_label_png


@pytest.fixture
def folder(tmp_path, scene):
    d = tmp_path / "images"
    d.mkdir()
    for i in range(5):                      # five images, batch size 2: a short last batch
        Image.fromarray(np.roll(scene, 7 * i, axis=1)).save(d / f"im{i}.png")
    return d


def test_predict_paths_overlaps_io_and_keeps_order(random_run, folder, tmp_path):
    pred = Predictor(random_run, "cpu")
    seen = []
    written = pred.predict_paths([folder], tmp_path / "out", overlay=True, batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1]
    assert [p.name for p in written] == [n for i in range(5) for n in (f"im{i}.png", f"im{i}_overlay.png")]
    for i in range(5):
        want = pred.predict(folder / f"im{i}.png")
        assert np.array_equal(read_label_png(tmp_path / "out" / f"im{i}.png"), want)


@pytest.mark.slow
def test_cli_predict_backend_tile_tta_matches_the_api(random_run, folder, tmp_path, capsys):
    args = ["predict", str(random_run), str(folder), "--out", str(tmp_path / "cli"), "--backend", "onnxruntime",
            "--tile", "48", "--overlap", "0.5", "--tta", "1", "1.25", "--batch-size", "2"]
    assert main(args) == 0
    assert "5 image(s)" in capsys.readouterr().out
    api = Predictor(random_run, "cpu", backend="onnxruntime", tile=(48, 48), overlap=0.5, tta=TTA(True, (1.0, 1.25)))
    for i in (0, 4):
        assert np.array_equal(read_label_png(tmp_path / "cli" / f"im{i}.png"), api.predict(folder / f"im{i}.png"))


@pytest.mark.slow
def test_cli_predict_with_an_exported_file(random_run, folder, tmp_path, capsys):
    assert main(["export", str(random_run), "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["predict", str(tmp_path / "m.onnx"), str(folder / "im0.png"), "--out", str(tmp_path / "o")]) == 0
    assert "backend openvino" in capsys.readouterr().out        # auto for an exported file on this CPU
    ref = Predictor(random_run, "cpu").predict(folder / "im0.png")
    assert (read_label_png(tmp_path / "o" / "im0.png") == ref).mean() >= 0.999


def _write_video(path, frames):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()


def _read_video(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
@pytest.mark.slow
def test_video_round_trip(random_run, scene, tmp_path, capsys, suffix):
    frames = [np.roll(scene, 3 * i, axis=1) for i in range(8)]
    src = tmp_path / "in.avi"
    _write_video(src, frames)
    out = tmp_path / f"out{suffix}"
    assert main(["predict", str(random_run), str(src), "--out", str(out), "--alpha", "0.6"]) == 0
    msg = capsys.readouterr().out
    assert "8 frames (64x64)" in msg and "fps end to end" in msg
    got = _read_video(out)
    assert len(got) == 8 and got[0].shape == (64, 64, 3)
    # each output frame is the overlay of that frame's prediction (up to the codecs' loss)
    pred = Predictor(random_run, "cpu")
    decoded = _read_video(src)
    for k in (0, 7):
        want = viz.overlay(decoded[k], pred.predict(decoded[k]), pred.classes.colors, 0.6)
        assert np.abs(got[k].astype(int) - want.astype(int)).mean() < 12
    assert not list(tmp_path.glob(".out.*"))                 # the atomic temp file is gone


@pytest.mark.slow
def test_video_max_frames_and_errors(random_run, scene, tmp_path, capsys):
    src = tmp_path / "in.avi"
    _write_video(src, [scene] * 6)
    assert main(["predict", str(random_run), str(src), "--out", str(tmp_path / "o.avi"), "--max-frames", "2"]) == 0
    assert len(_read_video(tmp_path / "o.avi")) == 2
    capsys.readouterr()
    for args, words in [([str(tmp_path / "none.mp4"), "--out", str(tmp_path / "x.mp4")], "video not found"),
                        ([str(src), "--out", str(tmp_path / "x.gif")], "a video output ends in"),
                        ([str(src), str(src), "--out", str(tmp_path / "x.mp4")], "one video"),
                        (["camera:x", "--out", str(tmp_path / "x.mp4")], "camera:N")]:
        assert main(["predict", str(random_run), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pixelseg: error:") and words in err and "\n" not in err
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    assert main(["predict", str(random_run), str(tmp_path / "broken.mp4"), "--out", str(tmp_path / "y.mp4")]) == 2
    assert "cannot be decoded as a video" in capsys.readouterr().err
    assert not (tmp_path / "y.mp4").exists()


@pytest.mark.slow
def test_cli_bench_table_and_json(random_run, tmp_path, capsys):
    js = tmp_path / "b.json"
    assert main(["bench", str(random_run), "--size", "64", "--backend", "torch", "openvino", "--iters", "3",
                 "--threads", "1", "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert [r["path"] for r in res["rows"]] == ["eager", "torch", "openvino"]
    eager = res["rows"][0]
    assert eager["speedup"] == 1.0 and eager["agreement"] == 1.0
    assert eager["peak_mb"] > 10                              # loading U-Net/resnet18 (56 MB of weights) shows
    for r in res["rows"]:
        assert 0 < r["p50_ms"] <= r["p95_ms"] and r["peak_mb"] >= 0 and r["throughput"] > 0
        assert r["agreement"] >= 0.999                       # fp32 paths agree with eager
    assert res["setup"]["size"] == [64, 64] and res["setup"]["threads"] == 1
    assert "speedup" in capsys.readouterr().out


def test_cli_bench_errors(capsys):
    assert main(["bench", "no-such-model-or-run"]) == 2
    assert "neither a run folder" in capsys.readouterr().err
    assert main(["bench", "unet", "--backend", "tensorrt"]) == 2
    assert "unknown bench path" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_predict_uncertainty_maps_are_the_softmax_max_and_entropy(random_run, folder, tmp_path, capsys):
    out = tmp_path / "u"
    assert main(["predict", str(random_run), str(folder), "--out", str(out), "--backend", "torch", "--batch-size", "2",
                 "--uncertainty", "--uncertainty-npy"]) == 0
    assert "5 image(s)" in capsys.readouterr().out
    pred = Predictor(random_run, "cpu")
    for i in (0, 4):
        probs = pred.probs([folder / f"im{i}.png"])[0]
        k = pred.classes.num_classes
        assert probs.shape == (k, 64, 64) and probs.dtype == np.float32
        assert np.allclose(probs.sum(0), 1, atol=1e-5)
        assert np.array_equal(read_label_png(out / f"im{i}.png"), pred.predict(folder / f"im{i}.png"))
        conf = np.load(out / f"im{i}_confidence.npy")
        ent = np.load(out / f"im{i}_entropy.npy")
        assert np.allclose(conf, probs.max(0), atol=1e-6) and conf.min() >= 1 / k - 1e-6 and conf.max() <= 1
        want_ent = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(0) / np.log(k)
        assert np.allclose(ent, want_ent, atol=1e-5) and 0 <= ent.min() and ent.max() <= 1
        for name, values in (("confidence", conf), ("entropy", ent)):
            png = np.asarray(Image.open(out / f"im{i}_{name}.png"))
            assert png.dtype == np.uint8 and png.shape == (64, 64)
            assert np.abs(png / 255.0 - values).max() <= 1 / 510 + 1e-6
        assert conf.std() > 0          # a real map, not a constant


def test_predict_uncertainty_npy_needs_uncertainty(random_run, folder, tmp_path, capsys):
    assert main(["predict", str(random_run), str(folder), "--out", str(tmp_path / "o"), "--uncertainty-npy"]) == 2
    assert "pass --uncertainty too" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_temperature_changes_probabilities_not_labels(random_run, folder, tmp_path):
    import dataclasses
    import shutil

    import torch

    from pixelseg.run.folder import RunFolder
    run = tmp_path / "hot"
    shutil.copytree(random_run, run)
    folder_ = RunFolder(run)
    assert folder_.info().temperature == 1.0                   # a model.json without the key: T = 1
    folder_.write_info(dataclasses.replace(folder_.info(), temperature=2.5))
    assert json.loads((run / "model.json").read_text())["model"]["temperature"] == 2.5
    assert folder_.info().temperature == 2.5
    cold, hot = Predictor(random_run, "cpu"), Predictor(run, "cpu")
    image = folder / "im1.png"
    logits = cold.predict_logits([image])[0]
    p_hot = hot.probs([image])[0]
    assert np.allclose(p_hot, torch.softmax(logits / 2.5, 0).numpy(), atol=1e-6)
    assert np.array_equal(hot.predict(image), cold.predict(image))
    assert p_hot.max(0).mean() < cold.probs([image])[0].max(0).mean()
