"""The report's rough edges, as a reader meets them: a title that names the run, curves a phone can read,
a scale on the confidence panel, the best epoch as a whole number."""
from __future__ import annotations

import base64
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelseg.reports import plots


def test_title_names_model_data_and_date(tiny_run, tiny_data):
    page = (tiny_run / "report" / "report.html").read_text()
    (h1,) = re.findall(r"<h1>(.*?)</h1>", page)
    day = datetime.fromtimestamp((tiny_run / "metrics.json").stat().st_mtime, timezone.utc).strftime("%Y-%m-%d")
    assert h1 == f"pixelseg report — unet / {json.loads((tiny_run / 'model.json').read_text())['model']['encoder']} on " \
                 f"{tiny_data.name}, trained {day} (r)"


def test_curves_have_a_phone_width_picture(tiny_run):
    page = (tiny_run / "report" / "report.html").read_text()
    (narrow,) = re.findall(r'<picture><source media="\(max-width: 700px\)" srcset="data:image/png;base64,([^"]+)">'
                           r'<img class="plot" alt="training curves[^"]*" src="data:image/png;base64,([^"]+)">'
                           r'</picture>', page)
    phone = Image.open(io.BytesIO(base64.b64decode(narrow[0])))
    wide = Image.open(io.BytesIO(base64.b64decode(narrow[1])))
    assert phone.width == 480 and phone.height == 870      # three panels stacked
    assert wide.width > phone.width
    assert base64.b64decode(narrow[1]) == (tiny_run / "report" / "curves.png").read_bytes()


ROWS = [{"epoch": "1", "lr": "0.01", "train_loss": "2.0", "val_mIoU": "0.3"},
        {"epoch": "2", "lr": "0.005", "train_loss": "1.5", "val_mIoU": "0.4"},
        {"epoch": "2.98", "lr": "0.001", "train_loss": "1.0", "val_mIoU": "0.55"}]


def test_narrow_curves_are_stacked_with_larger_type():
    fig = plots.curves(ROWS, best_epoch=2.98, narrow=True)
    assert tuple(fig.get_size_inches()) == (4.8, 8.7)
    boxes = [ax.get_position() for ax in fig.axes]
    assert len(boxes) == 3 and boxes[0].y0 > boxes[1].y0 > boxes[2].y0                # one panel per row
    assert all(ax.title.get_fontsize() >= 13 and ax.xaxis.label.get_fontsize() >= 13 for ax in fig.axes)
    wide = plots.curves(ROWS, best_epoch=2.98)
    assert wide.axes[0].get_position().y0 == wide.axes[1].get_position().y0            # side by side as before
    assert wide.axes[0].title.get_fontsize() < 13


def test_best_marker_names_a_whole_epoch():
    for best, label in ((2.98, "best (3)"), (2.0, "best (2)"), (21.98, "best (22)")):
        val_ax = plots.curves(ROWS, best_epoch=best).axes[1]
        marker = val_ax.lines[-1]
        assert marker.get_label() == label and list(marker.get_xdata()) == [best, best]   # drawn where it was
        assert label in [t.get_text() for t in val_ax.get_legend().get_texts()]


def test_confidence_panel_has_a_colour_bar():
    conf = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1))
    panel = plots.confidence_map(conf)
    out = plots.with_colorbar(panel)
    assert out.shape[0] == panel.shape[0] and out.shape[1] > panel.shape[1] + 10
    np.testing.assert_array_equal(out[:, :64], panel)
    ramp_x = 64 + max(2, 48 // 60)                                  # after the gap
    top, bottom = plots.confidence_map(np.array([[1.0]])), plots.confidence_map(np.array([[0.0]]))
    np.testing.assert_array_equal(out[0, ramp_x], top[0, 0])
    np.testing.assert_array_equal(out[-1, ramp_x], bottom[0, 0])
    labels = out[:, ramp_x + max(6, 48 // 16):]
    assert (labels.min(axis=2) < 100).any()                         # the 1 / 0.5 / 0 are drawn
    gallery = plots.gallery_panel(np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8),
                                  np.zeros((48, 64), np.uint8), _Classes(), conf)
    without = plots.gallery_panel(np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8),
                                  np.zeros((48, 64), np.uint8), _Classes(), None)
    assert gallery.shape[1] > without.shape[1] + panel.shape[1]     # the confidence panel and its scale


class _Classes:
    colors = ((0, 0, 0), (200, 0, 0))
    ignore_index = 255


@pytest.mark.slow
def test_phone_width_shows_the_stacked_curves_in_chromium(tiny_run):
    chromium = Path("/usr/bin/chromium")
    if not chromium.is_file():
        pytest.skip("Debian's chromium is not installed")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            shown = {}
            for width in (390, 1280):
                page = browser.new_page(viewport={"width": width, "height": 800})
                page.goto((tiny_run / "report" / "report.html").as_uri(), wait_until="load")
                shown[width] = page.evaluate("""() => { const i = document.querySelector('picture img');
                    return {w: i.naturalWidth, shown: i.getBoundingClientRect().width}; }""")
                page.close()
        finally:
            browser.close()
    assert shown[390]["w"] == 480 and shown[390]["shown"] <= 390          # the stacked figure, fitted to the screen
    assert shown[1280]["w"] > 480                                         # the wide one on a desktop
