"""The HTTP API through FastAPI's test client: answers match the Predictor, every bad input is a
documented 4xx with a JSON body naming the limit, and the server's own machinery (batching, timeout,
back-pressure, API key, metrics, schema) does what it says."""
from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from pixelseg.viz import overlay as viz
from pixelseg.serve.settings import Batching, Limits
from pixelseg.serve.app import create_app
from pixelseg.serve.errors import SEGMENT_ERRORS

from tests.helpers.serving import (
    SlowPredictor,
    assert_refusal,
    png_bytes,
    png_header_only,
    post_concurrently,
    sample_image,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(serve_run, serve_predictor):
    app = create_app(serve_run, device="cpu", backend="torch", predictor=serve_predictor,
                     limits=Limits(max_upload_bytes=200_000, max_pixels=250_000))
    with TestClient(app) as c:
        yield c


def rle_decode(rle: dict) -> np.ndarray:
    return np.repeat(np.asarray(rle["values"]), np.asarray(rle["lengths"])).reshape(rle["height"], rle["width"])


# ---------------------------------------------------------------------------------------- answers

def test_json_matches_the_predictor_at_the_original_size(client, serve_predictor):
    img = sample_image(45, 61)
    r = client.post("/v1/segment?format=json&rle=true", files={"image": ("a.png", png_bytes(img), "image/png")})
    assert r.status_code == 200 and r.headers["x-cache"] == "miss"
    out = r.json()
    assert (out["width"], out["height"]) == (61, 45)
    label = rle_decode(out["label_rle"])
    expected = serve_predictor.predict(img)
    np.testing.assert_array_equal(label, expected)
    table = serve_predictor.classes
    assert [c["name"] for c in out["classes"]] == list(table.names)
    assert [tuple(c["color"]) for c in out["classes"]] == [tuple(c) for c in table.colors]
    counts = np.bincount(expected.ravel(), minlength=table.num_classes)
    assert [c["pixels"] for c in out["classes"]] == counts.tolist()
    assert sum(c["fraction"] for c in out["classes"]) == pytest.approx(1.0)
    assert "model;dur=" in r.headers["server-timing"] and "infer;dur=" in r.headers["server-timing"]
    # the same bytes again come from the cache, identical
    again = client.post("/v1/segment?rle=true", content=png_bytes(img), headers={"content-type": "image/png"})
    assert again.headers["x-cache"] == "hit" and again.json()["cached"] is True
    np.testing.assert_array_equal(rle_decode(again.json()["label_rle"]), expected)
    assert client.post("/v1/segment", content=png_bytes(img)).json()["label_rle"] is None   # rle is opt-in


def test_label_png_is_a_palette_png_of_class_indices(client, serve_predictor):
    img = sample_image(33, 47, seed=1)
    r = client.post("/v1/segment?format=label", content=png_bytes(img), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.mode == "P" and im.size == (47, 33)
        np.testing.assert_array_equal(np.asarray(im), serve_predictor.predict(img))
        pal = np.asarray(im.getpalette()[:18]).reshape(6, 3)
    np.testing.assert_array_equal(pal, np.asarray(serve_predictor.classes.colors))


def test_overlay_is_viz_overlay_at_the_original_size(client, serve_predictor):
    img = sample_image(40, 52, seed=2)
    label = serve_predictor.predict(img)
    table = serve_predictor.classes
    for alpha, boundaries in ((0.3, True), (0.7, False)):
        r = client.post(f"/v1/segment?format=overlay&alpha={alpha}&boundaries={str(boundaries).lower()}",
                        files={"image": ("x.png", png_bytes(img), "image/png")})
        assert r.status_code == 200
        got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
        np.testing.assert_array_equal(got, viz.overlay(img, label, table.colors, alpha, table.ignore_index,
                                                       boundaries=boundaries))
    with_legend = client.post("/v1/segment?format=overlay&legend=true", content=png_bytes(img))
    w, h = Image.open(io.BytesIO(with_legend.content)).size
    assert h >= 40 and w > 52                       # the legend panel is added beside the image


def test_confidence_png_is_the_top_probability(client, serve_predictor):
    img = sample_image(37, 50, seed=3)
    r = client.post("/v1/segment?format=confidence", files={"image": ("c.png", png_bytes(img), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-temperature"] == "1" and "model;dur=" in r.headers["server-timing"]
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.mode == "L" and im.size == (50, 37)
        got = np.asarray(im)
    top = serve_predictor.probs([img])[0].max(0)
    assert np.abs(got / 255.0 - top).max() <= 1 / 510 + 1e-6
    assert got.min() >= 255 // serve_predictor.classes.num_classes and got.std() > 0


def test_confidence_uses_the_runs_temperature(serve_run, serve_predictor, tmp_path):
    import dataclasses
    import shutil

    from pixelseg.run.folder import RunFolder
    from pixelseg.serve.app import make_predictor
    run = tmp_path / "calibrated"
    shutil.copytree(serve_run, run)
    folder = RunFolder(run)
    folder.write_info(dataclasses.replace(folder.info(), temperature=3.0))
    pred = make_predictor(run, "cpu", "torch")
    img = sample_image(30, 30, seed=4)
    with TestClient(create_app(run, device="cpu", backend="torch", predictor=pred)) as c:
        r = c.post("/v1/segment?format=confidence", content=png_bytes(img), headers={"content-type": "image/png"})
        label = c.post("/v1/segment?format=label", content=png_bytes(img), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["x-temperature"] == "3"
    hot = np.asarray(Image.open(io.BytesIO(r.content))) / 255.0
    cold = serve_predictor.probs([img])[0].max(0)
    assert hot.mean() < cold.mean() - 0.01                       # softened ...
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(label.content))), serve_predictor.predict(img))


def test_other_formats_modes_and_exif_orientation(client, serve_predictor):
    img = sample_image(30, 50, seed=3)
    gray, rgba = img[:, :, 0], np.dstack([img, np.full(img.shape[:2], 200, np.uint8)])
    for arr, fmt, ct in ((gray, "PNG", "image/png"), (rgba, "PNG", "image/png"), (img, "BMP", "image/bmp"),
                         (img, "TIFF", "image/tiff"), (img, "WEBP", "image/webp"), (img, "JPEG", "image/jpeg")):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        r = client.post("/v1/segment?rle=true", content=buf.getvalue(), headers={"content-type": ct})
        assert r.status_code == 200, (fmt, r.text)
        label = rle_decode(r.json()["label_rle"])
        assert label.shape == (30, 50)
        if fmt != "JPEG":                            # lossless: the very pixels the predictor sees
            np.testing.assert_array_equal(label, serve_predictor.predict(arr))
    # a phone photo stored sideways with EXIF orientation 6 is labeled upright, as people see it
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", exif=exif)
    out = client.post("/v1/segment", content=buf.getvalue(), headers={"content-type": "image/jpeg"}).json()
    assert (out["width"], out["height"]) == (30, 50)


# ----------------------------------------------------------------------------------- bad input

GOOD = png_bytes(sample_image(20, 20, seed=9))


@pytest.mark.parametrize("case", [
    # (name, request kwargs, status, code, limit)
    ("empty body", dict(content=b"", headers={"content-type": "image/png"}), 400, "empty_body", None),
    ("empty file part", dict(files={"image": ("a.png", b"", "image/png")}), 400, "empty_body", None),
    ("text file as body", dict(content=b"hello, world\n", headers={"content-type": "text/plain"}), 415,
     "unsupported_media_type", None),
    ("text file as part", dict(files={"image": ("notes.txt", b"hello, world\n", "text/plain")}), 415,
     "unsupported_media_type", None),
    ("text bytes called png", dict(content=b"hello, world\n", headers={"content-type": "image/png"}), 415,
     "unsupported_media_type", None),
    ("json body", dict(json={"image": "x"}), 415, "unsupported_media_type", None),
    ("png declared as jpeg", dict(content=GOOD, headers={"content-type": "image/jpeg"}), 415,
     "unsupported_media_type", None),
    ("gif", dict(content=b"GIF89a" + b"\0" * 40, headers={"content-type": "application/octet-stream"}), 415,
     "unsupported_media_type", None),
    ("truncated png", dict(content=GOOD[: len(GOOD) // 2], headers={"content-type": "image/png"}), 400,
     "undecodable_image", None),
    ("corrupt png", dict(content=GOOD[:60] + b"\xff" * 40 + GOOD[100:], headers={"content-type": "image/png"}), 400,
     "undecodable_image", None),
    ("huge declared dimensions", dict(content=png_header_only(100_000, 100_000), headers={"content-type": "image/png"}),
     413, "too_many_pixels", "max_pixels"),
    ("just over max_pixels", dict(content=png_header_only(501, 500)), 413, "too_many_pixels", "max_pixels"),
    ("zero-size image", dict(content=png_header_only(0, 10)), 400, "undecodable_image", None),
    ("upload over max_upload_bytes", dict(content=b"\x89PNG\r\n\x1a\n" + b"\0" * 250_000), 413,
     "payload_too_large", "max_upload_bytes"),
    ("no file, a text field", dict(files={"file": (None, b"abc")}), 422, "missing_field", None),
    ("two files, neither 'image'", dict(files=[("a", ("a.png", GOOD, "image/png")), ("b", ("b.png", GOOD, "image/png"))]),
     422, "missing_field", None),
    ("extra field", dict(files={"image": ("a.png", GOOD, "image/png")}, data={"format": "label"}), 422,
     "unknown_field", None),
    ("image as a text field", dict(files={"image": (None, b"abc")}), 422, "invalid_field", None),
    ("two images", dict(files=[("image", ("a.png", GOOD, "image/png")), ("image", ("b.png", GOOD, "image/png"))]),
     422, "invalid_field", None),
    ("multipart without boundary", dict(content=b"--x\r\n", headers={"content-type": "multipart/form-data"}), 400,
     "malformed_multipart", None),
], ids=lambda c: c[0])
def test_bad_input_is_the_documented_4xx(client, case):
    name, kwargs, status, code, limit = case
    t0 = time.perf_counter()
    r = client.post("/v1/segment", **kwargs)
    assert_refusal(r, status, code, limit)
    assert status in SEGMENT_ERRORS                 # every refusal it can give is in the schema
    if code == "too_many_pixels":
        assert time.perf_counter() - t0 < 2.0          # refused from the header, nothing decoded


@pytest.mark.parametrize("query,code", [
    ("format=gif", "invalid_parameter"), ("alpha=1.5", "invalid_parameter"), ("alpha=abc", "invalid_parameter"),
    ("rle=maybe", "invalid_parameter"), ("fromat=label", "unknown_parameter"),
])
def test_bad_parameters_are_422(client, query, code):
    body = assert_refusal(client.post(f"/v1/segment?{query}", content=GOOD), 422, code)
    assert query.split("=")[0] in body["message"]


def test_unknown_paths_and_methods(client):
    assert_refusal(client.get("/v2/segment"), 404, "not_found")
    assert_refusal(client.get("/v1/segment"), 405, "method_not_allowed")


def raw_post(app, headers: list[tuple[bytes, bytes]], receive) -> list[dict]:
    """Drive the ASGI app directly with our own `receive`, to control when (and whether) body bytes arrive."""
    messages: list[dict] = []

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/segment", "raw_path": b"/v1/segment", "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "headers": headers}

    async def main():
        async with app.router.lifespan_context(app):
            await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(main())
    return messages


def test_the_declared_length_is_refused_before_the_body_is_read(serve_run, serve_predictor):
    """A client announcing 1 GB gets 413 at once; the server never waits for (or buffers) the bytes."""
    app = create_app(serve_run, predictor=serve_predictor, limits=Limits(max_upload_bytes=1000))
    received = []

    async def receive():
        received.append(1)
        await asyncio.sleep(30)                 # a body that never arrives
        return {"type": "http.request", "body": b"", "more_body": False}

    messages = raw_post(app, [(b"content-type", b"image/png"), (b"content-length", b"1000000000")], receive)
    assert messages[0]["status"] == 413 and not received


def test_a_slow_upload_runs_into_the_timeout(serve_run, serve_predictor):
    """The timeout covers the upload too: a client trickling bytes cannot hold a request open forever."""
    app = create_app(serve_run, predictor=serve_predictor, limits=Limits(timeout_s=0.3))
    chunks = [GOOD[i:i + 50] for i in range(0, len(GOOD), 50)]

    async def receive():
        await asyncio.sleep(0.1)                # 10 bytes/s-ish: the whole file would take seconds
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    messages = raw_post(app, [(b"content-type", b"image/png")], receive)
    assert messages[0]["status"] == 408 and chunks       # refused before the upload finished
    assert b'"limit":"timeout_s"' in messages[1]["body"]


# ------------------------------------------------------------------- batching, timeout, back-pressure

def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(serve_run, serve_predictor):
    slow = SlowPredictor(serve_predictor, 0.15)
    app = create_app(serve_run, predictor=slow, batching=Batching(max_batch=4))
    images = [sample_image(24 + i, 40 - i, seed=20 + i) for i in range(7)]
    answers = asyncio.run(post_concurrently(app, [png_bytes(im) for im in images]))
    for im, r in zip(images, answers):
        assert r.status_code == 200
        np.testing.assert_array_equal(rle_decode(r.json()["label_rle"]), serve_predictor.predict(im))
    assert sum(slow.batches) == 7 and max(slow.batches) > 1 and max(slow.batches) <= 4


@pytest.mark.slow
def test_full_queue_is_429_with_retry_after(serve_run, serve_predictor):
    slow = SlowPredictor(serve_predictor, 0.3)
    app = create_app(serve_run, predictor=slow, batching=Batching(max_batch=1), limits=Limits(max_queue=2))
    answers = asyncio.run(post_concurrently(app, [png_bytes(sample_image(20, 20, seed=40 + i)) for i in range(6)]))
    codes = sorted(r.status_code for r in answers)
    assert 200 in codes and 429 in codes and set(codes) <= {200, 429}
    busy = next(r for r in answers if r.status_code == 429)
    assert_refusal(busy, 429, "busy", "max_queue")
    assert busy.headers["retry-after"] == "1"


@pytest.mark.slow
def test_a_full_queue_refuses_before_reading_the_upload(serve_run, serve_predictor):
    slow = SlowPredictor(serve_predictor, 0.5)
    app = create_app(serve_run, predictor=slow, batching=Batching(max_batch=1), limits=Limits(max_queue=1))
    received = []

    async def receive():
        received.append(1)
        await asyncio.sleep(30)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main():
        async with app.router.lifespan_context(app):
            batcher = app.state.batcher
            first = asyncio.create_task(batcher.submit(sample_image(20, 20)))     # runs in the model
            await asyncio.sleep(0.1)
            second = asyncio.create_task(batcher.submit(sample_image(20, 20)))    # waits: the queue is full
            await asyncio.sleep(0.05)
            messages = []

            async def send(message):
                messages.append(message)
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/v1/segment", "raw_path": b"/v1/segment", "query_string": b"",
                     "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                     "headers": [(b"content-type", b"image/png")]}
            await asyncio.wait_for(app(scope, receive, send), 5)
            await asyncio.gather(first, second)
            return messages

    messages = asyncio.run(main())
    assert messages[0]["status"] == 429 and not received


@pytest.mark.slow
def test_request_over_the_timeout_is_408(serve_run, serve_predictor):
    slow = SlowPredictor(serve_predictor, 1.0)
    app = create_app(serve_run, predictor=slow, limits=Limits(timeout_s=0.25))
    with TestClient(app) as c:
        body = assert_refusal(c.post("/v1/segment", content=GOOD), 408, "timeout", "timeout_s")
        assert body["limit_value"] == 0.25
        time.sleep(1.2)                                # the model finishes; the server is still fine after
        assert c.get("/healthz").json()["status"] == "ok"


# ---------------------------------------------------------------------------- key, metrics, schema

def test_api_key(serve_run, serve_predictor):
    app = create_app(serve_run, predictor=serve_predictor, api_key="s3cret-key-123")
    with TestClient(app) as c:
        assert_refusal(c.post("/v1/segment", content=GOOD), 401, "unauthorized")
        assert_refusal(c.post("/v1/segment", content=GOOD, headers={"X-API-Key": "wrong-key-000"}), 401, "unauthorized")
        assert_refusal(c.get("/v1/model"), 401, "unauthorized")
        assert_refusal(c.get("/metrics"), 401, "unauthorized")
        ok = {"X-API-Key": "s3cret-key-123"}
        assert c.post("/v1/segment", content=GOOD, headers=ok).status_code == 200
        assert c.get("/v1/model", headers=ok).status_code == 200
        assert c.get("/healthz").status_code == 200    # probes need no key
        schema = c.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_model_endpoint_reports_the_run(client, serve_run):
    import json
    m = client.get("/v1/model").json()
    desc = json.loads((serve_run / "model.json").read_text())
    assert m["model"] == "unet" and m["backend"] == "torch" and m["in_channels"] == 3
    assert [c["name"] for c in m["classes"]] == desc["classes"]["names"]
    assert [c["color"] for c in m["classes"]] == desc["classes"]["colors"]
    assert m["preprocessing"]["image_size"] == [48, 48] and m["preprocessing"]["mean"] == desc["preprocessing"]["mean"]
    assert m["metrics"]["mIoU"] == json.loads((serve_run / "metrics.json").read_text())["mIoU"]
    assert m["limits"]["max_pixels"] == 250_000


def test_metrics_count_requests_by_route_and_status(serve_run, serve_predictor):
    app = create_app(serve_run, predictor=serve_predictor)
    with TestClient(app) as c:
        for _ in range(3):
            c.post("/v1/segment", content=GOOD)
        c.post("/v1/segment", content=b"")
        c.get("/nope/1")
        c.get("/nope/2")
        text = c.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    seg = lambda status: samples[("pixelseg_http_requests_total",            # noqa: E731
                                  (("method", "POST"), ("route", "/v1/segment"), ("status", status)))]
    assert seg("200") == 3 and seg("400") == 1
    # random paths share one label instead of creating one each
    assert samples[("pixelseg_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 2
    assert samples[("pixelseg_http_request_duration_seconds_count", (("route", "/v1/segment"),))] == 4
    assert samples[("pixelseg_refusals_total", (("code", "empty_body"),))] == 1
    assert samples[("pixelseg_images_total", ())] == 1          # the two repeats came from the cache


def test_openapi_documents_both_bodies_and_every_refusal(client):
    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/v1/segment"]["post"]
    content = op["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["required"] == ["image"]
    assert {"image/png", "image/jpeg", "application/octet-stream"} <= set(content)
    for status in ("400", "408", "413", "415", "422", "429"):
        assert op["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    ok = op["responses"]["200"]["content"]
    assert set(ok) == {"application/json", "image/png"}
    assert {p["name"] for p in op["parameters"]} == {"format", "rle", "alpha", "boundaries", "legend"}


def test_a_run_trained_at_a_scale_is_served_at_that_scale(make_scale_run, monkeypatch):
    """serve answers what predict gives for a run trained at a scale: the upload resized by the scale and
    predicted whole, or, over the whole-image budget, by windows of the training crop; labels at the upload's
    own size; /v1/model names the scale and the crop."""
    from pixelseg.models import windows
    from pixelseg.inference.predictor import Predictor
    run = make_scale_run("serve-scale", 0.5)
    small, big = sample_image(70, 90, seed=4), sample_image(150, 190, seed=5)
    with TestClient(create_app(run, device="cpu", backend="torch")) as c:
        pre = c.get("/v1/model").json()["preprocessing"]
        assert (pre["resize"], pre["scale"], pre["crop"]) == ("scale", 0.5, [64, 64])
        monkeypatch.setitem(windows.WHOLE_PIXELS, "cpu", 48 * 48)   # 35x45 scaled fits, 75x95 does not
        reference = Predictor(run, device="cpu")
        assert not reference._windowed(small) and reference._windowed(big)
        for img in (small, big):
            r = c.post("/v1/segment?format=label", content=png_bytes(img), headers={"content-type": "image/png"})
            assert r.status_code == 200, r.text
            with Image.open(io.BytesIO(r.content)) as im:
                assert im.size == (img.shape[1], img.shape[0])
                np.testing.assert_array_equal(np.asarray(im), reference.predict(img))


def test_an_upload_far_from_the_training_size_gets_a_warning(client, serve_predictor):
    """The run trained on 48x48 images; a 240x240 upload is 5x larger: the JSON and a header say so, with the
    fix, and the label map is still the model's answer. A close size gets no warning."""
    big = sample_image(240, 240)
    r = client.post("/v1/segment?format=json&rle=true", files={"image": ("big.png", png_bytes(big), "image/png")})
    assert r.status_code == 200
    assert "5.0x larger than the training images (median 48x48)" in r.json()["warning"]
    assert r.headers["x-pixelseg-warning"] == r.json()["warning"]
    np.testing.assert_array_equal(rle_decode(r.json()["label_rle"]), serve_predictor.predict(big))
    label = client.post("/v1/segment?format=label", content=png_bytes(big), headers={"content-type": "image/png"})
    assert "x-pixelseg-warning" in label.headers
    ok = client.post("/v1/segment?format=json", files={"image": ("ok.png", png_bytes(sample_image(50, 60)),
                                                                 "image/png")})
    assert "warning" not in ok.json() and "x-pixelseg-warning" not in ok.headers


def test_the_only_file_of_an_upload_is_taken_whatever_its_field_name(client, serve_predictor):
    img = sample_image(40, 52)
    r = client.post("/v1/segment?format=json&rle=true", files={"file": ("a.png", png_bytes(img), "image/png")})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(rle_decode(r.json()["label_rle"]), serve_predictor.predict(img))
