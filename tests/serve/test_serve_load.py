"""The server under a bounded fault load (issue 16): 8 clients for a few seconds against a real
`pixelseg serve` process on 127.0.0.1, uploads mixed valid and hostile (decompression bombs, oversize,
truncated, not images, wrong fields), while /healthz is probed throughout. Asserted: no 5xx, no
dropped request (every request gets its expected answer, no connection error), /healthz answers
every probe quickly, and the server's memory stays bounded."""
from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.helpers.serving import free_port, jpeg_declaring, png_bytes, png_header_only, sample_image, wait_healthy

pytestmark = pytest.mark.slow

CLIENTS = 8
SECONDS = float(os.environ.get("PIXELSEG_LOAD_SECONDS", "12"))
RSS_GROWTH_MB = 200        # measured: +25 MB over 12 s (740 requests) after warm-up

SERVER = """
import sys
from pixelseg.serve.server import run_server
from pixelseg.serve.settings import Limits, ServeSettings
run_server(ServeSettings(sys.argv[1], backend="torch", device="cpu", threads=1, cache_pixels=0,
                         limits=Limits(max_upload_bytes=300_000, max_pixels=250_000, max_pixels_in_flight=500_000)),
           port=int(sys.argv[2]), access_log=False)
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def uploads() -> list[tuple[str, dict, int]]:
    """(name, httpx request kwargs, the status it must get)."""
    valid = [png_bytes(sample_image(48 + 8 * i, 160 - 8 * i, seed=100 + i)) for i in range(12)]
    jpeg = io.BytesIO()
    Image.fromarray(sample_image(120, 90, seed=7)).save(jpeg, format="JPEG")
    cases = [(f"png-{i}", dict(content=b, headers={"content-type": "image/png"}), 200) for i, b in enumerate(valid)]
    cases += [
        ("jpeg", dict(files={"image": ("a.jpg", jpeg.getvalue(), "image/jpeg")}), 200),
        ("png bomb", dict(content=png_header_only(100_000, 100_000)), 413),
        ("jpeg bomb", dict(content=jpeg_declaring(65500, 65500), headers={"content-type": "image/jpeg"}), 413),
        ("just over the pixels", dict(content=png_header_only(501, 500)), 413),
        ("oversize upload", dict(content=b"\x89PNG\r\n\x1a\n" + os.urandom(310_000)), 413),
        ("truncated", dict(content=valid[0][: len(valid[0]) // 2], headers={"content-type": "image/png"}), 400),
        ("empty", dict(content=b"", headers={"content-type": "image/png"}), 400),
        ("text", dict(content=b"hello\n", headers={"content-type": "text/plain"}), 415),
        ("random bytes", dict(content=os.urandom(2000)), 415),
        ("wrong field", dict(files={"file": (None, b"not a file")}), 422),
    ]
    return cases


async def hammer(url: str, pid: int, seconds: float) -> dict:
    cases = uploads()
    wrong: list[str] = []
    dropped: list[str] = []
    statuses: dict[int, int] = {}
    probes: list[float] = []
    rss: list[float] = []
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=CLIENTS + 1)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        async def one_client(offset: int) -> None:
            while time.monotonic() < stop_at:
                name, kwargs, expected = cases[(next(counter) * 7 + offset) % len(cases)]
                try:
                    r = await client.post("/v1/segment?format=label", **kwargs)
                except httpx.HTTPError as e:
                    dropped.append(f"{name}: {type(e).__name__}")
                    continue
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code != expected:
                    wrong.append(f"{name}: {r.status_code} (expected {expected}) {r.text[:120]}")

        async def probe() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=5) as own:   # its own connection: never queued
                while time.monotonic() < stop_at:
                    t0 = time.monotonic()
                    try:
                        ok = (await own.get("/healthz")).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    probes.append(time.monotonic() - t0 if ok else float("inf"))
                    rss.append(rss_mb(pid))
                    await asyncio.sleep(0.25)

        await asyncio.gather(probe(), *(one_client(i) for i in range(CLIENTS)))
    return {"wrong": wrong, "dropped": dropped, "statuses": statuses, "probes": probes, "rss": rss}


@pytest.mark.usefixtures("one_thread")
def test_under_a_fault_load_no_5xx_no_drop_health_up_memory_bounded(serve_run):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(serve_run), str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(proc, url, poll_s=0.2)
        for name, kwargs, expected in uploads():          # warm-up: lazy initialisation is not growth
            assert httpx.post(f"{url}/v1/segment?format=label", timeout=30, **kwargs).status_code == expected, name
        before = rss_mb(proc.pid)
        out = asyncio.run(hammer(url, proc.pid, SECONDS))
        assert proc.poll() is None                        # still running
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=30)
    total = sum(out["statuses"].values())
    summary = (f"{total} requests {out['statuses']}, rss {before:.0f} -> max {max(out['rss']):.0f} MB, "
               f"health max {max(out['probes']) * 1000:.0f} ms")
    print(summary)
    assert total >= 10 * CLIENTS, summary                 # the load was real
    assert not [s for s in out["statuses"] if s >= 500], summary
    assert not out["dropped"] and not out["wrong"], (out["dropped"][:5], out["wrong"][:5], summary)
    assert {200, 400, 413, 415, 422} <= set(out["statuses"]), summary
    assert len(out["probes"]) >= SECONDS * 2 and max(out["probes"]) < 2.0, summary
    assert max(out["rss"]) - before < RSS_GROWTH_MB, summary
    assert "Traceback" not in log, log[-2000:]
