"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright against a live
uvicorn on localhost. It uploads an image and checks that what the page draws and lists is what the
API answers, that the controls work, that it stays usable at phone width and that it asks nothing
of the internet."""
from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers.serving import png_bytes, sample_image

CHROMIUM = os.environ.get("PIXELSEG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="needs Chromium (Debian: apt-get install chromium)"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        # --no-sandbox: the tests run as root in containers, where Chromium's sandbox cannot start
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, url: str, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    outside = []

    def only_localhost(route):
        if route.request.url.startswith(url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_localhost)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    # selectors, not wait_for_function: the page's CSP forbids eval, which that polling needs
    page.wait_for_selector("#model-line:has-text('unet')")
    return page, outside, errors


def canvas_pixels(page) -> np.ndarray:
    data = page.evaluate("""() => {
        const c = document.getElementById('canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    }""")
    w, h = page.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]")
    return np.asarray(data, np.int16).reshape(h, w, 4)[:, :, :3]


def set_opacity(page, percent: int) -> None:
    page.eval_on_selector("#opacity", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", percent)


def test_upload_shows_the_overlay_and_legend_the_api_gives(browser, live_server, tmp_path):
    img = sample_image(45, 61, seed=11)
    path = tmp_path / "street.png"
    path.write_bytes(png_bytes(img))
    api = httpx.post(f"{live_server.url}/v1/segment?rle=true", content=path.read_bytes(),
                     headers={"content-type": "image/png"}).json()
    overlay = httpx.post(f"{live_server.url}/v1/segment?format=overlay&alpha=0.5&boundaries=false",
                         content=path.read_bytes()).content
    api_overlay = np.asarray(Image.open(io.BytesIO(overlay)).convert("RGB"), np.int16)
    label = np.repeat(api["label_rle"]["values"], api["label_rle"]["lengths"]).reshape(45, 61)
    colors = np.asarray([c["color"] for c in api["classes"]], np.int16)

    page, outside, errors = open_page(browser, live_server.url, 1280, 800)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#legend li[data-fraction]")
    assert "61 × 45" in page.inner_text("#status")

    # the legend lists exactly the classes the API found, with their shares, largest first
    rows = page.eval_on_selector_all("#legend li", """els => els.map(li => ({
        name: li.dataset.name, fraction: Number(li.dataset.fraction),
        shown: li.querySelector('.share').textContent,
        swatch: getComputedStyle(li.querySelector('.swatch')).backgroundColor}))""")
    present = sorted((c for c in api["classes"] if c["pixels"]), key=lambda c: -c["pixels"])
    assert len(present) >= 2
    assert [r["name"] for r in rows] == [c["name"] for c in present]
    for r, c in zip(rows, present):
        assert r["fraction"] == pytest.approx(c["fraction"])
        assert r["shown"] in (f"{100 * c['fraction']:.1f}%", "<0.1%")
        assert r["swatch"] == "rgb({}, {}, {})".format(*c["color"])

    # the overlay the page draws is the API's overlay (canvas blending rounds within a level or two)
    drawn = canvas_pixels(page)
    assert drawn.shape == (45, 61, 3)
    assert np.abs(drawn - api_overlay).max() <= 2
    set_opacity(page, 100)                               # only the class colors: the label map itself
    assert np.abs(canvas_pixels(page) - colors[label]).max() <= 1
    set_opacity(page, 0)                                 # only the image
    assert np.abs(canvas_pixels(page) - img).max() <= 1

    # hiding the largest class shows the image there and leaves the rest colored
    set_opacity(page, 100)
    hidden = next(i for i, c in enumerate(api["classes"]) if c["name"] == present[0]["name"])
    page.click(f"#legend li[data-class-index='{hidden}'] input")
    now = canvas_pixels(page)
    assert np.abs(now[label == hidden] - img[label == hidden]).max() <= 1
    assert np.abs(now[label != hidden] - colors[label][label != hidden]).max() <= 1
    page.click("#show-all")
    assert np.abs(canvas_pixels(page) - colors[label]).max() <= 1

    # downloads: the label PNG is the API's (class indices), the overlay PNG is what is on screen
    with page.expect_download() as d:
        page.click("#dl-label")
    assert d.value.suggested_filename == "street_label.png"
    with Image.open(d.value.path()) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), label)
    with page.expect_download() as d:
        page.click("#dl-overlay")
    assert d.value.suggested_filename == "street_overlay.png"
    with Image.open(d.value.path()) as im:
        assert im.size == (61, 45)
        assert np.abs(np.asarray(im.convert("RGB"), np.int16) - colors[label]).max() <= 1

    # a refusal shows the API's message, not a blank page
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error")
    assert "not an image" in page.inner_text("#status") or "content type" in page.inner_text("#status")
    assert not outside and not errors
    page.close()


def test_confidence_toggle_draws_the_apis_confidence_map(browser, live_server, tmp_path):
    img = sample_image(40, 52, seed=12)
    path = tmp_path / "field.png"
    path.write_bytes(png_bytes(img))
    conf = httpx.post(f"{live_server.url}/v1/segment?format=confidence", content=path.read_bytes(),
                      headers={"content-type": "image/png"}).content
    gray = np.asarray(Image.open(io.BytesIO(conf)), np.int16)
    page, outside, errors = open_page(browser, live_server.url, 1280, 800)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#legend li[data-fraction]")
    set_opacity(page, 100)
    classes_only = canvas_pixels(page)
    page.check("#show-confidence")
    page.wait_for_selector("#confidence-out:has-text('on')")
    drawn = canvas_pixels(page)
    assert np.abs(drawn - gray[:, :, None]).max() <= 1           # the map itself, gray = probability x 255
    page.uncheck("#show-confidence")
    page.wait_for_selector("#confidence-out:has-text('off')")
    assert np.abs(canvas_pixels(page) - classes_only).max() <= 1
    assert not outside and not errors
    page.close()


def test_usable_at_phone_width_with_drag_and_drop(browser, live_server):
    page, outside, errors = open_page(browser, live_server.url, 390, 844)
    # a file dropped on the page (a real DataTransfer, as a drag from the desktop delivers it)
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", base64.b64encode(png_bytes(sample_image(60, 200, seed=12))).decode())
    page.wait_for_selector("#legend li[data-fraction]")
    assert "dropped.png · 200 × 60 px" in page.inner_text("#status")
    layout = page.evaluate("""() => {
        const box = (id) => document.getElementById(id).getBoundingClientRect();
        return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
                canvas: box('canvas'), legend: box('legend'), slider: box('opacity'), label: box('dl-label')};
    }""")
    assert layout["scroll"] <= layout["inner"]           # no sideways scrolling
    assert 0 < layout["canvas"]["width"] <= 390 and layout["canvas"]["height"] > 0
    # scaled to fit, not squeezed: the 200 x 60 image keeps its aspect ratio on screen
    assert layout["canvas"]["width"] / layout["canvas"]["height"] == pytest.approx(200 / 60, rel=0.02)
    for key in ("legend", "slider"):                     # controls stack below the image, full width
        assert layout[key]["width"] > 250 and layout[key]["top"] >= layout["canvas"]["bottom"]
    button = layout["label"]                             # a download button: below too, tappable, on screen
    assert button["top"] >= layout["canvas"]["bottom"] and button["width"] >= 80 and button["height"] >= 30
    assert button["right"] <= layout["inner"]
    assert not outside and not errors
    page.close()


def test_api_key_prompt_and_a_format_the_browser_cannot_decode(browser, serve_run, serve_predictor, tmp_path):
    """With a key the page asks for it first; a TIFF (which Chromium cannot decode) is drawn from the
    server's own rendering of the upright image, so the overlay still lines up."""
    from tests.helpers.serving import LiveServer

    from pixelseg.serve.app import create_app
    app = create_app(serve_run, predictor=serve_predictor, api_key="page-key-12345")
    img = sample_image(36, 52, seed=13)
    path = tmp_path / "scan.tiff"
    Image.fromarray(img).save(path, format="TIFF")
    with LiveServer(app) as server:
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.goto(server.url + "/")
        page.wait_for_selector("#key-box:not([hidden])")
        assert "API key" in page.inner_text("#status")
        page.fill("#key", "page-key-12345")
        page.click("#key-box button")
        page.wait_for_selector("#model-line:has-text('unet')")
        assert page.is_hidden("#key-box")
        page.set_input_files("#file", str(path))
        page.wait_for_selector("#legend li[data-fraction]")
        set_opacity(page, 0)
        assert np.abs(canvas_pixels(page) - img).max() <= 1
        page.close()


def test_several_images_before_after_split_zoom_and_the_models_time(browser, live_server, tmp_path):
    images = {"a.png": sample_image(45, 61, seed=21), "b.png": sample_image(70, 40, seed=22)}
    paths = []
    for name, img in images.items():
        (tmp_path / name).write_bytes(png_bytes(img))
        paths.append(str(tmp_path / name))
    (tmp_path / "c.txt").write_text("not an image")
    paths.append(str(tmp_path / "c.txt"))

    page, outside, errors = open_page(browser, live_server.url, 1280, 800)
    page.set_input_files("#file", paths)                 # three at once
    page.wait_for_selector("#gallery li:nth-child(3) button[data-status='error']")
    # asked after the page (whose requests ran the model): these come from the server's cache
    api = {name: httpx.post(f"{live_server.url}/v1/segment?rle=true", content=png_bytes(img)).json()
           for name, img in images.items()}
    assert page.eval_on_selector_all("#gallery button", "bs => bs.map(b => b.dataset.status)") == ["ok", "ok", "error"]
    # the first is shown, with the model's own time and the round trip
    status = page.inner_text("#status")
    assert status.startswith("a.png · 61 × 45 px · model ")
    import re
    model_ms, trip_ms = map(int, re.search(r"model (\d+) ms.* (\d+) ms round trip", status).groups())
    assert 0 <= model_ms <= trip_ms

    # another thumbnail shows that image
    page.click("#gallery li:nth-child(2) button")
    assert page.inner_text("#status").startswith("b.png · 40 × 70 px")
    img = images["b.png"]
    rle = api["b.png"]["label_rle"]
    label = np.repeat(rle["values"], rle["lengths"]).reshape(70, 40)
    colors = np.asarray([c["color"] for c in api["b.png"]["classes"]], np.int16)
    set_opacity(page, 100)
    assert np.abs(canvas_pixels(page) - colors[label]).max() <= 1

    # before/after: left of the split the image alone, right of it the classes
    page.eval_on_selector("#compare", "el => { el.value = 50; el.dispatchEvent(new Event('input')); }")
    drawn = canvas_pixels(page)
    assert np.abs(drawn[:, :20] - img[:, :20]).max() <= 1
    assert np.abs(drawn[:, 20:] - colors[label][:, 20:]).max() <= 1
    assert page.is_visible("#divider")

    # zoom: the canvas grows inside a scrolling stage, the page does not scroll sideways, fit restores it
    width = lambda: page.evaluate("document.getElementById('canvas').getBoundingClientRect().width")  # noqa: E731
    fitted = width()
    page.click("#zoom-in")
    page.click("#zoom-in")
    assert width() == pytest.approx(fitted * 2.25, rel=0.02)
    layout = page.evaluate("""() => ({page: document.documentElement.scrollWidth, inner: window.innerWidth,
        stage: document.getElementById('stage').scrollHeight, room: document.getElementById('stage').clientHeight})""")
    assert layout["page"] <= layout["inner"] and layout["stage"] > layout["room"]
    assert np.abs(canvas_pixels(page) - drawn).max() == 0        # zoom changes the view, not the pixels
    page.click("#zoom-fit")
    assert width() == pytest.approx(fitted, abs=1)

    # the failed upload says why
    page.click("#gallery li:nth-child(3) button")
    assert page.is_visible("#status.error") and page.is_hidden("#stage")
    assert not outside and not errors
    page.close()


def test_docs_page_renders_from_local_assets(browser, live_server):
    pytest.importorskip("fastapi_offline")
    page = browser.new_page()
    outside, errors, console = [], [], []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(live_server.url)
               else (outside.append(route.request.url), route.abort()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.goto(live_server.url + "/docs")
    page.wait_for_selector("[data-path='/v1/segment']")
    page.wait_for_selector("[data-path='/v1/model']")
    assert not outside and not errors and not console, (outside, errors, console)
    page.close()
