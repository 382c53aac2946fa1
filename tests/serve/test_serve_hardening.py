"""The server against careless and hostile clients (issue 16): stalled and half-open connections are
closed, a client leaving mid-upload is one log line, decoded pixels in flight stay under the budget
whatever the clients do, and every pixel-limit refusal is pixelseg's own message."""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import weakref

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pixelseg.serve.settings import Limits
from pixelseg.serve.app import create_app
from pixelseg.serve import routes
from pixelseg.serve.protocol import H11Protocol, HttpToolsProtocol

from tests.helpers.serving import (
    LiveServer,
    SlowPredictor,
    assert_refusal,
    jpeg_declaring,
    png_bytes,
    png_header_only,
    post_concurrently,
    sample_image,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------- (d) pixel limit

@pytest.mark.parametrize("body", [png_header_only(1000, 1000), png_header_only(100_000, 100_000),
                                  jpeg_declaring(65500, 65500), png_header_only(501, 500)],
                         ids=["png-4x-limit", "png-100k", "jpeg-65500", "png-just-over"])
def test_every_pixel_refusal_is_pixelsegs_message_with_the_limit_it_states(serve_run, serve_predictor, monkeypatch,
                                                                          body):
    # `pixelseg serve` arms Pillow's own guard at the server's limit; above 2x that, Image.open raised
    # first and the 413 carried Pillow's message ("exceeds limit of 500000 pixels") and another number
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 250_000)
    app = create_app(serve_run, predictor=serve_predictor, limits=Limits(max_pixels=250_000))
    with TestClient(app) as c:
        t0 = time.perf_counter()
        r = c.post("/v1/segment", content=body)
        assert time.perf_counter() - t0 < 2.0                    # from the header: nothing decoded
    out = assert_refusal(r, 413, "too_many_pixels", "max_pixels")
    assert out["limit_value"] == 250_000 and "limit of 250,000" in out["message"]
    assert "exceeds limit" not in out["message"] and "decompression bomb" not in out["message"].lower()


def test_pillows_own_bomb_guard_also_answers_413(monkeypatch):
    """`pixelseg serve` turns Pillow's guard back on at the server's limit; should it fire before our
    header check (a format whose size Pillow checks while opening), the answer is the same 413."""
    from pixelseg.serve.decode import decode_image
    from pixelseg.serve.errors import ApiError
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ApiError) as e:
        decode_image(png_header_only(100, 100), "image/png", Limits(max_pixels=10**9))
    assert (e.value.status, e.value.code, e.value.limit) == (413, "too_many_pixels", "max_pixels")


# ------------------------------------------------------------------------------- (c) pixel budget

class DecodedPixels:
    """Counts the pixels of decoded images still alive, independently of the budget's own bookkeeping:
    each array returned by decode_image is counted until it is freed."""

    def __init__(self, monkeypatch):
        self.live = self.peak = 0
        self.lock = threading.Lock()            # decodes run in worker threads; frees happen anywhere
        real = routes.decode_image

        def counting(*args, **kwargs):
            image = real(*args, **kwargs)
            n = image.shape[0] * image.shape[1]
            with self.lock:
                self.live += n
                self.peak = max(self.peak, self.live)
            weakref.finalize(image, self._freed, n)
            return image
        monkeypatch.setattr(routes, "decode_image", counting)

    def _freed(self, n: int) -> None:
        with self.lock:
            self.live -= n


@pytest.mark.slow
def test_decoded_pixels_in_flight_never_exceed_the_budget(serve_run, serve_predictor, monkeypatch):
    decoded = DecodedPixels(monkeypatch)
    slow = SlowPredictor(serve_predictor, 0.15)
    # 100 x 100 images, room for two at a time (and the largest allowed image fits alone)
    app = create_app(serve_run, predictor=slow, limits=Limits(max_pixels=10_000, max_pixels_in_flight=25_000))
    images = [sample_image(100, 100, seed=60 + i) for i in range(8)]
    # overlays: the image is needed until the answer is encoded
    answers = asyncio.run(post_concurrently(app, [png_bytes(im) for im in images], query="format=overlay"))
    assert [r.status_code for r in answers] == [200] * 8
    budget = app.state.budget
    assert decoded.peak <= 25_000 and budget.peak <= 25_000
    assert decoded.peak == 20_000                     # two ran together: the budget throttles, not serializes
    assert budget.in_use == 0 and decoded.live == 0   # nothing kept (the batcher once kept its last batch)
    assert max(slow.batches) <= 2


def test_a_request_that_cannot_get_room_is_503_with_retry_after(serve_run, serve_predictor):
    slow = SlowPredictor(serve_predictor, 0.8)
    app = create_app(serve_run, predictor=slow, limits=Limits(max_pixels=10_000, max_pixels_in_flight=10_000,
                                                              budget_wait_s=0.3))
    answers = asyncio.run(post_concurrently(app, [png_bytes(sample_image(100, 100, seed=70 + i)) for i in range(3)]))
    codes = sorted(r.status_code for r in answers)
    assert codes[0] == 200 and 503 in codes and set(codes) <= {200, 503}
    busy = next(r for r in answers if r.status_code == 503)
    body = assert_refusal(busy, 503, "overloaded", "max_pixels_in_flight")
    assert body["limit_value"] == 10_000 and busy.headers["retry-after"] == "2"
    assert app.state.budget.in_use == 0


def test_the_budget_is_first_come_first_served_and_survives_cancellation():
    from pixelseg.serve.budget import PixelBudget

    async def main():
        budget, order = PixelBudget(100, wait_s=5), []

        async def job(name, pixels, hold):
            async with budget.reserve(pixels):
                order.append(name)
                await asyncio.sleep(hold)
        first = asyncio.create_task(job("a", 60, 0.2))
        await asyncio.sleep(0.01)
        big = asyncio.create_task(job("big", 100, 0))        # waits for everything
        await asyncio.sleep(0.01)
        small = asyncio.create_task(job("small", 10, 0))    # would fit now, but arrived after big
        gone = asyncio.create_task(job("gone", 10, 0))
        await asyncio.sleep(0.01)
        gone.cancel()                                       # a waiter whose request timed out
        await asyncio.gather(first, big, small, return_exceptions=True)
        return order, budget.in_use, budget.peak
    order, in_use, peak = asyncio.run(main())
    assert order == ["a", "big", "small"] and in_use == 0 and peak == 100


# ----------------------------------------------------------------------- (a) stalled connections

def closed_after(sock: socket.socket, t0: float, limit: float = 5.0) -> tuple[float, bytes]:
    """Seconds from t0 until the server closes the socket, and what it sent before."""
    sock.settimeout(limit)
    got = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"still open after {limit} s (got {got[:80]!r})") from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return time.monotonic() - t0, got


@pytest.fixture(params=[HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"])
def impatient_server(request, serve_run, serve_predictor):
    app = create_app(serve_run, predictor=serve_predictor, limits=Limits(idle_timeout_s=1.0))
    with LiveServer(app, http=request.param) as server:
        yield server


@pytest.mark.slow
def test_stalled_and_idle_connections_are_closed_within_the_idle_timeout(impatient_server):
    port = impatient_server.port
    head = (f"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/png\r\n"
            "Content-Length: 5000\r\n\r\n").encode()
    cases = {"silent": b"", "half a request line": b"POST /v1/seg", "half the headers": head[:40],
             "half the body": head + png_bytes(sample_image(20, 20))[:100]}
    socks = {}
    for name, sent in cases.items():                    # all at once: the timeouts run side by side
        socks[name] = socket.create_connection(("127.0.0.1", port)), time.monotonic()
        socks[name][0].sendall(sent)
    for name, (sock, t0) in socks.items():
        with sock:
            elapsed, got = closed_after(sock, t0)
        assert 0.5 < elapsed < 3.0, (name, elapsed)
        if name == "half the body":                      # the app answers a stalled body before closing
            assert got.startswith(b"HTTP/1.1 408") and b'"limit":"idle_timeout_s"' in got, got[:300]
        else:
            assert got == b"", (name, got[:200])
    # a keep-alive connection left idle after a complete answer is closed too
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        elapsed, got = closed_after(sock, time.monotonic())
        assert got.startswith(b"HTTP/1.1 200") and 0.5 < elapsed < 3.0
    # and the server still answers
    assert httpx.get(f"{impatient_server.url}/healthz", timeout=5).status_code == 200


# ------------------------------------------------------------------ (b) client gone mid-upload

class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_a_client_leaving_mid_upload_is_one_log_line_not_a_traceback(live_server):
    records = Records()
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "pixelseg.serve", "")]
    for lg in loggers:
        lg.addHandler(records)
    try:
        with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
            sock.sendall(f"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                         f"Content-Length: 100000\r\n\r\n".encode() + b"\x89PNG\r\n\x1a\n" + b"\0" * 5000)
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while not records.records and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)                                  # anything else it would log comes now
    finally:
        for lg in loggers:
            lg.removeHandler(records)
    # the same record reaches several of our handlers (propagation): count distinct ones
    distinct = list({id(r): r for r in records.records}.values())
    lines = [r.getMessage() for r in distinct]
    assert len(distinct) == 1, lines
    assert "closed the connection during the upload to POST /v1/segment" in lines[0]
    assert distinct[0].exc_info is None and "\n" not in lines[0]
    assert httpx.get(f"{live_server.url}/healthz", timeout=5).status_code == 200


# ------------------------------------------------------------------------------ a damaged run file

def test_a_damaged_metrics_json_is_a_warning_not_a_dead_server(serve_run, serve_predictor, tmp_path, caplog):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(serve_run, run)
    (run / "metrics.json").write_text('{"mIoU": 0.5,')                # cut short
    with caplog.at_level(logging.WARNING, logger="pixelseg.serve"):
        app = create_app(run, predictor=serve_predictor)
    with TestClient(app) as c:
        assert c.get("/v1/model").json()["metrics"] is None
        assert c.post("/v1/segment", content=png_bytes(sample_image(20, 20))).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "pixelseg.serve"]
    assert len(warnings) == 1 and "metrics.json" in warnings[0] and "report no metrics" in warnings[0]
