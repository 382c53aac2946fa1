"""A big-image run (trained at a scale, predicted by sliding windows at that scale) served to 16 concurrent clients
uploading big images, against a real `pixelseg serve` process, twice over: every upload answered with its full-size
label map, no 5xx, /healthz up throughout, and the server's memory bounded. What it holds is the pixel budget's
worth of images being predicted (max_pixels_in_flight admits two of these at a time) plus the bodies of the
uploads waiting for their turn (each capped by --max-upload-mb), and the bound holds over a second wave too.
Measured on a 2-core AMD EPYC (2026-12-06), growth over the warm-up: 2 clients +180 MB, 6 clients +260 MB,
16 clients +376 MB (each extra waiting upload of a 6 MB PNG ~ +14 MB); a second wave peaked +28 to +99 MB above
the first (the allocator keeps freed arenas), within the same bound."""
from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers.serving import free_port, png_bytes, sample_image, wait_healthy
from tests.serve.test_serve_load import rss_mb

pytestmark = pytest.mark.slow

CLIENTS = int(os.environ.get("PIXELSEG_BIG_CLIENTS", "16"))
H, W = 1400, 1800                    # 2.5 M pixels, 7.6 MB decoded
PROCESSING_MB = 250                  # two images in flight, their windows and the allocator's arenas (measured +180)
PER_WAITING_BODY = 3                 # a waiting upload holds its body, briefly twice while it is joined

SERVER = """
import sys
from pixelseg.serve.server import run_server
from pixelseg.serve.settings import Limits, ServeSettings
run_server(ServeSettings(sys.argv[1], backend="torch", device="cpu", threads=1, cache_pixels=0,
                         limits=Limits(max_pixels=2_600_000, max_pixels_in_flight=5_200_000, budget_wait_s=600)),
           port=int(sys.argv[2]), access_log=False)
"""


@pytest.mark.usefixtures("one_thread")
def test_sixteen_clients_with_big_images_get_full_label_maps_in_bounded_memory(make_scale_run):
    run = make_scale_run("serve-big", 0.25)
    bodies = [png_bytes(sample_image(H, W, seed=i)) for i in range(CLIENTS)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(run), str(port)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(proc, url, poll_s=0.2)
        warm = httpx.post(f"{url}/v1/segment?format=label", content=bodies[0], timeout=300)
        assert warm.status_code == 200, warm.text
        before = rss_mb(proc.pid)

        async def load():
            rss, probes, done = [], [], []
            limits = httpx.Limits(max_connections=CLIENTS + 1)
            async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
                async def one(body):
                    r = await client.post("/v1/segment?format=label", content=body,
                                          headers={"content-type": "image/png"})
                    done.append(r)

                async def watch(task):
                    async with httpx.AsyncClient(base_url=url, timeout=10) as own:
                        while not task.done():
                            t0 = time.monotonic()
                            ok = (await own.get("/healthz")).status_code == 200
                            probes.append(time.monotonic() - t0 if ok else float("inf"))
                            rss.append(rss_mb(proc.pid))
                            await asyncio.sleep(0.25)
                work = asyncio.ensure_future(asyncio.gather(*(one(b) for b in bodies)))
                await asyncio.gather(work, watch(work))
            return done, rss, probes
        done, rss, probes = asyncio.run(load())
        first = max(rss)
        again, rss2, probes2 = asyncio.run(load())
        done, rss, probes = done + again, rss + rss2, probes + probes2
        print(f"wave peaks: {first:.0f} then {max(rss2):.0f} MB")
        assert proc.poll() is None
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=60)
    summary = f"rss {before:.0f} -> max {max(rss):.0f} MB over {len(rss)} samples, health max {max(probes):.2f} s"
    print(summary)
    assert [r.status_code for r in done] == [200] * (2 * CLIENTS), [r.text[:200] for r in done if r.status_code != 200]
    for r in done:
        label = np.asarray(Image.open(io.BytesIO(r.content)))
        assert label.shape == (H, W)                      # the full-size map, from windows at the training scale
    assert max(probes) < 5.0, summary
    body_mb = max(map(len, bodies)) / 2**20
    assert max(rss) - before < PROCESSING_MB + CLIENTS * PER_WAITING_BODY * body_mb, summary   # both waves
    assert "Traceback" not in log, log[-2000:]
