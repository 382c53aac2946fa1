"""Helpers shared by the server tests and benchmarks/serve_load.py-style clients
(`from tests.helpers.serving import ...`)."""
from __future__ import annotations

import asyncio
import io
import socket
import struct
import threading
import time
import zlib

import httpx
import numpy as np
from PIL import Image


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def sample_image(h: int = 45, w: int = 61, seed: int = 0) -> np.ndarray:
    """Blocks of color (so the model predicts several classes) with noise, at an odd size."""
    rng = np.random.default_rng(seed)
    img = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((12, 16, 1))).astype(np.uint8)
    img = np.ascontiguousarray(np.resize(img, (h, w, 3)))
    noise = rng.integers(-20, 20, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread of the test process, on a free localhost port."""

    def __init__(self, app, http: type | None = None):
        """http: a uvicorn protocol class (default: the one `pixelseg serve` uses)."""
        import uvicorn

        from pixelseg.serve.server import uvicorn_options
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, **uvicorn_options(app.state.settings, http)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def wait_healthy(proc, url: str, timeout_s: float = 90, poll_s: float = 0.2) -> None:
    """Until the server process answers /healthz (failing at once if it died, or after timeout_s)."""
    import httpx
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(poll_s)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds (almost) no pixel data: what a bomb's header looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims width x height (a JPEG bomb's header)."""
    buf = io.BytesIO()
    Image.fromarray(sample_image(16, 16)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def assert_refusal(r: httpx.Response, status: int, code: str, limit: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == status and body["code"] == code and body["message"], body
    assert body["limit"] == limit
    return body


class SlowPredictor:
    """The real predictor behind a delay, recording the batches it was given."""

    def __init__(self, real, delay: float):
        self.real, self.delay, self.info, self.batches = real, delay, real.info, []
        self.lock = threading.Lock()

    def predict_batch(self, images):
        with self.lock:
            self.batches.append(len(images))
        time.sleep(self.delay)
        return self.real.predict_batch(images)


async def post_concurrently(app, requests: list[bytes], query: str = "rle=true") -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as c:
            return await asyncio.gather(*(c.post(f"/v1/segment?{query}", content=b) for b in requests))
