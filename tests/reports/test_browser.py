"""The report in a real browser: headless Chromium opens the file, every image decodes, the tables are complete."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed"), pytest.mark.slow]


def test_report_renders_in_chromium(tiny_run, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    report = tiny_run / "report" / "report.html"
    html = report.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html        # self-contained: nothing to fetch
    m = json.loads((tiny_run / "metrics.json").read_text())
    k = len(m["per_class"])
    # a copy alone in an empty folder: the page must not need any file beside it
    alone = tmp_path / "alone.html"
    shutil.copy(report, alone)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            failed = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(alone.as_uri(), wait_until="load")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            images = page.evaluate("""() => Array.from(document.images).map(i => ({
                alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))""")
            rows = page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('table[id]'))
                .map(t => [t.id, t.tBodies[0] ? t.tBodies[0].rows.length : 0]))""")
            height = page.evaluate("document.documentElement.scrollHeight")
            headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        finally:
            browser.close()
    assert not failed
    # 4 charts + 4 worst + 4 best gallery panels, all decoded
    assert len(images) == 4 + 8
    assert all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in images), images
    assert rows["per-class"] == k and rows["gallery-worst"] == 4 and rows["gallery-best"] == 4
    assert rows["confusion"] == k and rows["summary"] >= 10 and rows["calibration-table"] == 6
    assert headings == ["Summary", "Training curves", "Per-class IoU", "Confusion matrix", "Calibration",
                        "Worst and best images"]
    from PIL import Image
    with Image.open(shot) as im:
        assert im.size[0] == 1280 and im.size[1] == height > 2000      # the whole page, charts included
        assert len(im.convert("RGB").getcolors(1 << 20) or range(1 << 20)) > 500    # pictures, not blank
