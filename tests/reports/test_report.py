"""The report of a trained run: files, numbers that match the metrics, a gallery that picks the right images."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelseg import cli
from pixelseg.data.index import Sample
from pixelseg.data.io import read_mask
from pixelseg.measure.metrics import mean_iou
from pixelseg.reports.analysis import analyze_predictions
from pixelseg.reports.builder import build_report
from pixelseg.reports.analysis import Collector, logits_to_prediction
from pixelseg.viz.overlay import save_label_png

N_VAL = 8                # tests/reports/conftest.py makes 8 val images
PNGS = ("curves.png", "class_iou.png", "confusion.png", "calibration.png")


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_training_writes_the_report_and_plots(tiny_run, html_tables):
    rdir = tiny_run / "report"
    for name in PNGS:
        arr = _png(rdir / name)
        assert arr.shape[0] > 150 and arr.shape[1] > 300 and arr.std() > 10, name   # a real chart, not a blank
    gallery = sorted(p.name for p in (rdir / "gallery").glob("*.png"))
    assert len(gallery) == N_VAL           # 8 images: the 4 worst and the 4 best, never the same image twice
    assert sum(n.startswith("worst-") for n in gallery) == 4
    panel = _png(rdir / "gallery" / gallery[0])
    assert panel.shape[1] > 4 * panel.shape[0] * 0.8     # image | GT | prediction | errors | confidence in a row

    m = json.loads((tiny_run / "metrics.json").read_text())
    a = json.loads((rdir / "analysis.json").read_text())
    assert a["summary"]["per_class"] == m["per_class"]  # the report's pass is the evaluation training saved
    cm = np.array(a["confusion_matrix"])
    assert cm.sum() == m["num_pixels"]
    assert cm.sum(1).tolist() == [c["gt_pixels"] for c in m["per_class"].values()]
    assert cm.sum(0).tolist() == [c["pred_pixels"] for c in m["per_class"].values()]

    t = html_tables(rdir / "report.html")
    rows = t["per-class"][1:]
    assert [r[0]["data-class"] for r in rows] == list(m["per_class"])
    for r in rows:
        cells = {c[0].get("data-key"): c[0].get("data-value") for c in r[1]}
        want = m["per_class"][r[0]["data-class"]]
        assert cells["iou"] == ("" if want["iou"] is None else repr(want["iou"]))
        assert int(cells["gt_pixels"]) == want["gt_pixels"]
    # the confusion table in the page holds the very counts of the matrix, row by row
    conf = t["confusion"][1:]
    names = list(m["per_class"])
    for r in conf:
        i = names.index(r[0]["data-class"])
        counts = [int(c[0]["data-count"]) for c in r[1] if "data-count" in c[0]]
        assert counts == cm[i].tolist()
        shown_pct = [float(c[1]) for c in r[1][1:] if c[1] != "—"]
        if cm[i].sum():
            assert shown_pct == pytest.approx((100 * cm[i] / cm[i].sum()).round(1).tolist(), abs=0.051)
    summary = {r[1][0][1]: r[1][1][1] for r in t["summary"]}
    assert summary["model"].startswith("unet / tu-tf_efficientnet_lite0") and "1 epochs" in summary["budget"]
    assert summary["classes"].startswith("6: background")


def test_calibration_numbers_are_right():
    from pixelseg.data.tools.synth import class_table
    col = Collector(class_table(), gallery=0)
    gt = torch.zeros(10, 10, dtype=torch.long)
    pred = gt.clone()
    pred[:3] = 1                                   # 30 wrong pixels ...
    conf = torch.full((10, 10), 0.95)
    conf[:4] = 0.3                                 # ... all among the 40 unsure ones
    col.add(0, Sample(Path("a.png"), Path("a.png"), "a"), pred, gt, conf)
    c = col.finish("val", "root", "src").calibration
    assert c["pixels"] == 100 and c["unsure_share"] == pytest.approx(0.4)
    assert c["unsure_accuracy"] == pytest.approx(10 / 40) and c["sure_accuracy"] == 1.0
    b_low, b_high = int(0.3 * 15), int(0.95 * 15)
    assert c["count"][b_low] == 40 and c["count"][b_high] == 60
    assert c["accuracy"][b_low] == pytest.approx(0.25) and c["confidence"][b_high] == pytest.approx(0.95)
    # ECE = sum over bins of share * |accuracy - confidence|
    assert c["ece"] == pytest.approx(0.4 * abs(0.25 - 0.3) + 0.6 * abs(1.0 - 0.95))


def test_confidence_is_the_softmax_maximum():
    logits = torch.randn(5, 7, 9) * 4
    pred, conf = logits_to_prediction(logits)
    p = torch.softmax(logits, 0)
    assert torch.equal(pred, logits.argmax(0))
    assert torch.allclose(conf, p.max(0).values, atol=1e-6)


def _write_predictions(data: Path, out: Path, wrong: dict[str, float]) -> None:
    """Copy every val mask as its 'prediction', then spoil a known share of the rows of some images."""
    from pixelseg.data.tools.synth import class_table
    colors = class_table().colors
    out.mkdir()
    for mask in sorted((data / "val" / "masks").iterdir()):
        label = read_mask(mask).astype(np.uint8)
        share = wrong.get(mask.stem, 0.0)
        rows = int(round(share * label.shape[0]))
        label[:rows] = (label[:rows] + 1) % len(colors)
        save_label_png(out / f"{mask.stem}.png", label, colors)


def test_gallery_picks_the_truly_worst_images(tiny_data, tmp_path, html_tables):
    # val_00006 all wrong, val_00002 mostly wrong, val_00004 a little: the worst three in that order;
    # the five untouched images are perfect and make up the best
    wrong = {"val_00006": 1.0, "val_00002": 0.6, "val_00004": 0.2}
    _write_predictions(tiny_data, tmp_path / "pred", wrong)
    a = analyze_predictions(tmp_path / "pred", tiny_data, gallery=3)
    assert [g.sample.stem for g in a.worst] == ["val_00006", "val_00002", "val_00004"]
    assert [g.miou for g in a.worst] == sorted(g.miou for g in a.worst) and a.worst[0].miou == 0.0
    assert all(g.miou == 1.0 for g in a.best) and not {g.sample.stem for g in a.best} & set(wrong)
    assert a.calibration is None                       # label maps carry no probabilities
    # per-image mIoU is the package's mIoU of that image alone
    gt = read_mask(tiny_data / "val" / "masks" / "val_00002.png").astype(np.int64)
    from pixelseg.viz.overlay import read_label_png
    pr = read_label_png(tmp_path / "pred" / "val_00002.png").astype(np.int64)
    cm = np.bincount(6 * gt.ravel() + pr.ravel(), minlength=36).reshape(6, 6)
    assert a.worst[1].miou == pytest.approx(mean_iou(cm))

    # `evaluate --pred-dir` writes the same report beside the label maps, gallery in that order
    assert cli.main(["evaluate", "--pred-dir", str(tmp_path / "pred"), "--data", str(tiny_data)]) == 0
    html = tmp_path / "pred" / "report" / "report.html"
    assert "Training curves" not in html.read_text()
    rows = html_tables(html)["gallery-worst"]               # 8 images: 4 worst, 4 best
    assert [r[0]["data-stem"] for r in rows[:3]] == ["val_00006", "val_00002", "val_00004"] and len(rows) == 4
    listed = html_tables(html)["per-image"][1:]                   # every image, lowest mIoU first
    assert len(listed) == N_VAL and [r[0]["data-stem"] for r in listed[:3]] == ["val_00006", "val_00002", "val_00004"]
    assert all(float(r[1][2][0]["data-value"]) == 1.0 for r in listed[3:])
    assert "calibration-table" not in html_tables(html)

    # and the error map is red exactly where the prediction is wrong
    from pixelseg.reports.plots import WRONG_COLOR, error_map
    img = np.full(gt.shape, 128, np.uint8)
    em = error_map(img, gt, pr, 255)
    red = np.all(em == WRONG_COLOR, axis=2)
    assert np.array_equal(red, gt != pr)


def test_gallery_heaps_keep_the_extremes_of_a_long_split():
    from pixelseg.data.tools.synth import class_table
    col = Collector(class_table(), gallery=2)
    rng = np.random.default_rng(0)
    gt = torch.from_numpy(rng.integers(0, 6, (16, 16)))
    scores = {}
    for i in range(30):
        pred = gt.clone()
        k = int(rng.integers(0, 16))
        pred[:k] = (pred[:k] + 1) % 6
        col.add(i, Sample(Path("x"), Path("y"), f"im{i}"), pred, gt)
        scores[i] = col.per_image[-1]["mIoU"]
    a = col.finish("val", "root", "src")
    order = sorted(scores, key=lambda i: (scores[i], col.per_image[i]["pixel_accuracy"], i))
    assert [g.index for g in a.worst] == order[:2]
    best = sorted(scores, key=lambda i: (-scores[i], -col.per_image[i]["pixel_accuracy"], i))
    assert [g.index for g in a.best] == best[:2]


@pytest.mark.slow
def test_report_without_the_data_still_shows_what_the_run_holds(tiny_run, tmp_path, html_tables):
    run = tmp_path / "moved"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("report"))
    cfg = (run / "config.yaml").read_text()
    root = json.loads((tiny_run / "report" / "analysis.json").read_text())["data"]
    (run / "config.yaml").write_text(cfg.replace(str(root), str(tmp_path / "gone")))
    html = build_report(run, out=tmp_path / "r.html")
    text = html.read_text()
    t = html_tables(html)
    assert "per-class" in t and "confusion" not in t and "gallery-worst" not in t
    assert "is not available" in text and "--data ROOT" in text
    assert (run / "report" / "curves.png").is_file() and not (run / "report" / "confusion.png").exists()


@pytest.mark.slow
def test_cli_report_evaluate_and_errors(tiny_run, tiny_data, tmp_path, capsys, html_tables):
    out = tmp_path / "x.html"
    assert cli.main(["report", str(tiny_run), "--data", str(tiny_data), "--out", str(out), "--gallery", "2",
                     "--device", "cpu"]) == 0
    assert len(html_tables(out)["gallery-best"]) == 2
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("report"))
    assert cli.main(["evaluate", str(run), "--data", str(tiny_data), "--device", "cpu", "--json",
                     str(tmp_path / "m.json")]) == 0
    assert (run / "report" / "report.html").is_file()
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["per_class"] == json.loads((tiny_run / "metrics.json").read_text())["per_class"]
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert cli.main(["report", str(tiny_run), "--out", str(tmp_path / "r.txt")]) == 2
    assert ".html" in capsys.readouterr().err
    assert cli.main(["report", str(tiny_run), "--data", str(tmp_path / "none")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_no_report(tiny_data, tmp_path, capsys):
    out = tmp_path / "quiet-run"
    assert cli.main(["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1", "--model", "unet",
                     "--image-size", "48", "--batch-size", "4", "--num-workers", "0", "--threads", "1",
                     "--no-report"]) == 0
    assert (out / "metrics.json").is_file() and not (out / "report").exists()
    assert "report:" not in capsys.readouterr().out


def test_api_evaluate_uses_the_runs_own_data(tiny_run, tiny_data, monkeypatch, tmp_path):
    """pixelseg.evaluate(run) without data scores the dataset the run was trained on (stored resolved), from
    any working directory, and gives what an explicit data= gives."""
    import pixelseg
    monkeypatch.chdir(tmp_path)
    implicit = pixelseg.evaluate(tiny_run)
    explicit = pixelseg.evaluate(tiny_run, data=tiny_data)
    assert implicit["mIoU"] == explicit["mIoU"] and implicit["num_pixels"] == explicit["num_pixels"]
    assert implicit["images"] == explicit["images"] > 0
