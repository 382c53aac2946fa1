"""The charts hold the right numbers (read back from the matplotlib figures), also with 150 classes."""
from __future__ import annotations

import json
import math
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pixelseg import cli
from pixelseg.data.classes import voc_colormap
from pixelseg.reports.compare import compare_runs
from pixelseg.reports import html, plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_curves_plot_the_csv_columns():
    rows = [{"epoch": "1", "lr": "0.01", "train_loss": "2.0", "val_mIoU": ""},
            {"epoch": "2", "lr": "0.005", "train_loss": "1.5", "val_mIoU": "0.4"},
            {"epoch": "3", "lr": "0.001", "train_loss": "1.0", "val_mIoU": "0.55"}]
    fig = plots.curves(rows, best_epoch=3.0)
    loss_ax, val_ax, lr_ax = fig.axes
    line = loss_ax.lines[0]
    assert line.get_label() == "train_loss" and list(line.get_ydata()) == [2.0, 1.5, 1.0]
    miou = val_ax.lines[0]                         # an epoch without validation is skipped, not drawn as 0
    assert miou.get_label() == "mIoU" and list(miou.get_xdata()) == [2.0, 3.0]
    assert list(val_ax.lines[1].get_xdata()) == [3.0, 3.0]    # the best-checkpoint marker
    assert lr_ax.get_yscale() == "log"
    assert plots.curves([]) is None


def test_class_iou_is_sorted_and_shows_frequency():
    names = ["road", "car", "sky", "dog"]
    fig = plots.class_iou(names, [0.5, 0.9, None, 0.1], [600, 300, 0, 100], voc_colormap(4))
    a1, a2 = fig.axes
    labels = [t.get_text() for t in a1.get_yticklabels()]
    assert labels == ["car", "road", "dog", "sky"]          # best first, the absent class last
    assert [round(p.get_width(), 3) for p in a1.patches] == [0.9, 0.5, 0.1, 0.0]
    assert [round(p.get_width(), 3) for p in a2.patches] == [30.0, 60.0, 10.0, 0.0]
    assert "absent" in [t.get_text() for t in a1.texts]


def test_confusion_heatmap_values_and_150_classes():
    cm = np.array([[90, 10, 0], [20, 80, 0], [0, 0, 0]])
    fig = plots.confusion(cm, ["a", "b", "c"])
    shown = fig.axes[0].images[0].get_array()
    assert np.allclose(shown[:2], [[0.9, 0.1, 0], [0.2, 0.8, 0]]) and shown.mask[2].all()   # no GT: blank row

    rng = np.random.default_rng(0)
    k = 150
    cm = np.diag(rng.integers(1000, 5000, k))
    pairs = [(3, 70), (70, 3), (12, 140), (99, 5), (41, 42)]
    for n, (i, j) in enumerate(pairs):
        cm[i, j] = 900 - 100 * n                    # the biggest confusions, in this order
    cm[rng.integers(0, k, 300), rng.integers(0, k, 300)] += 1        # plus scattered noise
    got = plots.confused_pairs(cm, 5)
    assert [(i, j) for i, j, _, _ in got] == pairs
    chosen = plots.most_confused_classes(cm)
    assert len(chosen) == plots.CONFUSION_MAX_CLASSES and chosen == sorted(chosen)
    assert {3, 70, 12, 140, 99, 5, 41, 42} <= set(chosen)
    names = [f"class {i}" for i in range(k)]
    fig = plots.confusion(cm, names, chosen)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [names[i] for i in chosen]
    assert "20 most confused of 150" in ax.get_title()
    # the heatmap keeps the full-matrix normalization of every shown row
    r = chosen.index(3)
    assert ax.images[0].get_array()[r, chosen.index(70)] == pytest.approx(cm[3, 70] / cm[3].sum())
    # 150 classes in the bar chart: it grows tall enough for one readable row per class
    w, h = plots.class_iou(names, list(rng.random(k)), list(cm.sum(1)), voc_colormap(k)).get_size_inches()
    assert h >= 0.15 * k
    table = html.per_class_table({"num_pixels": int(cm.sum()), "classes_absent": [], "per_class": {
        n: {"iou": 0.5, "accuracy": 0.5, "dice": 0.5, "gt_pixels": int(cm[i].sum()), "pred_pixels": int(cm[:, i].sum())}
        for i, n in enumerate(names)}}, voc_colormap(k))
    assert table.count("<tr data-class=") == k


def test_reliability_bars_are_the_bin_accuracies():
    calib = {"edges": list(np.linspace(0, 1, 6)), "accuracy": [None, 0.3, 0.5, 0.6, 0.95],
             "confidence": [None, 0.3, 0.5, 0.7, 0.9], "count": [0, 10, 10, 30, 50], "ece": 0.05,
             "unsure_threshold": 0.5, "unsure_share": 0.2}
    a1, a2 = plots.reliability(calib).axes
    assert [round(p.get_height(), 3) for p in a1.containers[0]] == [0.3, 0.5, 0.6, 0.95]   # empty bin: no bar
    assert [round(p.get_height(), 3) for p in a1.containers[1]] == [0.0, 0.0, 0.1, -0.05]  # gap to confidence
    assert [round(p.get_height(), 1) for p in a2.containers[0]] == [0.0, 10.0, 10.0, 30.0, 50.0]
    assert "ECE 5.00%" in a1.get_title()


def test_compare_two_runs(tiny_run, tmp_path, capsys, html_tables):
    other = tmp_path / "better"
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("report"))
    m = json.loads((other / "metrics.json").read_text())
    for i, c in enumerate(m["per_class"].values()):
        c["iou"] = 0.1 * i
    m["mIoU"] = 0.25
    (other / "metrics.json").write_text(json.dumps(m))
    res = compare_runs([tiny_run, other], out=tmp_path / "cmp.html")
    assert res["labels"] == ["r", "better"] and res["iou"]["better"][3] == pytest.approx(0.3)
    t = html_tables(tmp_path / "cmp.html")["compare"]
    body = [r for r in t if "data-class" in r[0]]
    assert len(body) == 6
    base = json.loads((tiny_run / "metrics.json").read_text())["per_class"]
    row = body[3]
    assert float(row[1][2][0]["data-value"]) == pytest.approx(0.3)
    assert float(row[1][3][0]["data-value"]) == pytest.approx(0.3 - base[row[0]["data-class"]]["iou"])
    assert (tmp_path / "cmp.png").is_file()
    page = (tmp_path / "cmp.html").read_text()
    assert 'data-setting="model"' in page and 'class="warn"' not in page      # same settings, same classes
    # a run with other classes and other data: the page says the comparison may mislead, and what differs
    import yaml
    odd = tmp_path / "odd"
    shutil.copytree(other, odd)
    m["per_class"] = {f"x{k}": v for k, v in m["per_class"].items()}
    (odd / "metrics.json").write_text(json.dumps(m))
    cfg = yaml.safe_load((odd / "config.yaml").read_text())
    cfg["data"]["root"], cfg["train"]["lr"] = "/elsewhere/data", 0.123
    (odd / "config.yaml").write_text(yaml.safe_dump(cfg))
    compare_runs([tiny_run, odd], out=tmp_path / "cmp2.html")
    page = (tmp_path / "cmp2.html").read_text()
    assert "the runs have different classes" in page and "trained on different data" in page
    assert '<td class="l">lr ≠</td>' in page and "0.123" in page
    capsys.readouterr()
    assert cli.main(["compare", str(tiny_run), str(odd)]) == 0      # the terminal says it as the page does
    err = capsys.readouterr().err
    assert "warning: the runs have different classes" in err and "trained on different data" in err

    assert cli.main(["compare", str(tiny_run), str(other)]) == 0
    out, err = capsys.readouterr()
    assert "better" in out and "mIoU" in out and "25.0" in out and "warning" not in err
    assert cli.main(["compare", str(tiny_run)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert cli.main(["compare", str(tiny_run), str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    assert not math.isnan(res["mIoU"]["r"])


def test_compare_bars_group_by_class_with_the_mean_first():
    fig = plots.compare_bars(["a", "b"], {"x": [0.1, 0.2], "y": [0.3, None]}, {"x": 0.15, "y": 0.3})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mIoU", "a", "b"]
    x_bars, y_bars = ax.containers
    assert [round(p.get_width(), 3) for p in x_bars] == [0.15, 0.1, 0.2]
    assert [round(p.get_width(), 3) for p in y_bars] == [0.3, 0.3, 0.0]        # missing class: no bar
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x", "y"]


def test_worst_window_finds_the_densest_errors():
    from pixelseg.reports.plots import worst_window
    wrong = np.zeros((1000, 1500), bool)
    wrong[700:760, 1200:1260] = True
    wrong[10:12, 10:12] = True                      # a few scattered errors elsewhere
    y0, x0, side = worst_window(wrong, 256)
    assert side == 256 and wrong[y0:y0 + side, x0:x0 + side].sum() == 3600
    assert worst_window(np.zeros((100, 80), bool), 256)[2] == 80      # never larger than the image


def test_a_big_images_gallery_panel_adds_a_zoomed_row():
    from pixelseg.data.classes import ClassTable
    from pixelseg.reports.plots import gallery_panel
    classes = ClassTable(("bg", "car"), ((0, 0, 0), (255, 0, 0)), 255)
    small = np.zeros((200, 300), np.uint8)
    big = np.zeros((1500, 2000), np.uint8)
    big[1000:1020, 1500:1530] = 1                   # a small object the model missed
    rgb = np.full((*big.shape, 3), 90, np.uint8)
    one = gallery_panel(rgb[:200, :300], small, small, classes)
    two = gallery_panel(rgb, big, np.zeros_like(big), classes)
    assert two.shape[0] > 1.8 * one.shape[0]        # the overview row and the zoomed row
    bottom = two[two.shape[0] // 2:]
    assert ((bottom[:, :, 0] > 200) & (bottom[:, :, 1] < 60)).sum() > 900   # the missed car, red, at full size
