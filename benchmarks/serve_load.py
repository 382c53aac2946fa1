"""Load test of `pixelseg serve`: N concurrent clients for T seconds against a real server on localhost.

    python benchmarks/serve_load.py                       # trains a small LR-ASPP run first (~1 min)
    python benchmarks/serve_load.py --run RUN --clients 8 --seconds 30 --size 512 512
    python benchmarks/serve_load.py --compare-batching    # the same load with --max-batch 1 and with N

The server is the real CLI (`pixelseg serve ... --no-cache`, a subprocess, uvicorn on 127.0.0.1); the
clients are asyncio tasks in this process, each sending one upload after another (a closed loop), every
upload a different image (the cache is off anyway, so every request runs the model). Reported per
configuration: requests completed, throughput, latency p50/p90/p99/max, the server's mean batch size
(from /metrics), where the server spent its time (its Server-Timing header: decode, model, encode), and
the counts of 5xx and dropped requests (connection errors, timeouts, any non-200).
With --hostile F a fraction F of the uploads are decompression bombs, truncated, empty or not images:
each must be refused with a 4xx (counted apart), never a 5xx or a dropped connection.
Exit status 1 if any request was a 5xx or was dropped.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from pixelseg.run.folder import RunFolder  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, load average {load:.1f} at start"


def train_run(out: Path) -> Path:
    import pixelseg
    from pixelseg.data.tools.synth import generate
    data = out / "data"
    generate(data, n_train=16, n_val=4, size=(160, 160), seed=0)
    return pixelseg.train(data, model="lraspp", image_size=(160, 160), batch_size=8, epochs=1, num_workers=0,
                          out=str(out / "run"), quiet=True)


def make_images(n: int, size: tuple[int, int], seed: int = 0) -> list[bytes]:
    """n different PNGs (smooth blobs plus noise: compresses like a photo, not like flat color)."""
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), np.int16)
        img = np.clip(img + rng.integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run: Path, args, max_batch: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "pixelseg.cli", "serve", str(run), "--port", str(self.port), "--no-cache",
               "--no-access-log", "--backend", args.backend, "--device", args.device, "--workers", str(args.workers),
               "--max-batch", str(max_batch), "--max-queue", str(max(64, 2 * args.clients))]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"server not ready after {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def scrape(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples if not s.labels}


def hostile_uploads() -> list[bytes]:
    """Uploads a careless or hostile client sends; each must be refused with a 4xx (never a 5xx):
    decompression bombs (headers declaring 100000^2 / 65500^2 pixels), truncated, empty, not an image."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png_bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="JPEG")
    jpeg = bytearray(buf.getvalue())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = (65500).to_bytes(2, "big") * 2
    good = make_images(1, (64, 64), seed=99)[0]
    return [png_bomb, bytes(jpeg), good[: len(good) // 2], b"", b"hello, world\n" * 20]


async def load(url: str, images: list[bytes], clients: int, seconds: float, timeout: float,
               hostile: float = 0.0) -> dict:
    latencies: list[float] = []
    phases: dict[str, list[float]] = {}          # the server's own Server-Timing: decode, model, encode
    statuses: dict[str, int] = {}
    dropped: list[str] = []
    counter = iter(range(10**9))
    hostile_bodies = hostile_uploads()
    refused: dict[str, int] = {}                  # hostile uploads answered with a 4xx, as they must be
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        async def one_client() -> None:
            while time.perf_counter() < stop_at:
                n = next(counter)
                bad = hostile_bodies[n % len(hostile_bodies)] if hostile and (n * 0.618) % 1 < hostile else None
                body = images[n % len(images)] if bad is None else bad
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/segment?format=label", content=body,
                                          headers={"content-type": "image/png"})
                except httpx.HTTPError as e:     # connection refused/reset, timeout: the request was dropped
                    dropped.append(type(e).__name__)
                    continue
                if bad is not None and 400 <= r.status_code < 500:
                    refused[str(r.status_code)] = refused.get(str(r.status_code), 0) + 1
                    continue
                statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                    for part in r.headers.get("server-timing", "").split(","):
                        name, _, dur = part.strip().partition(";dur=")
                        if dur:
                            phases.setdefault(name, []).append(float(dur.split(";")[0]))   # ;desc=... follows

        t_start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - t_start
    lat = np.asarray(latencies) * 1000 if latencies else np.asarray([float("nan")])
    return {"ok": len(latencies), "elapsed_s": elapsed, "throughput_rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()), "statuses": statuses,
            "server_ms": {k: float(np.mean(v)) for k, v in phases.items()},
            "hostile_refused": refused,
            "server_errors": sum(v for k, v in statuses.items() if k.startswith("5")),
            "dropped": len(dropped) + sum(v for k, v in statuses.items() if k != "200" and not k.startswith("5")),
            "dropped_kinds": sorted(set(dropped))}


def run_config(run: Path, args, images: list[bytes], max_batch: int) -> dict:
    server = Server(run, args, max_batch)
    try:
        server.wait_ready()
        # warm up: first calls pay for lazy initialisation (thread pools, kernels, allocator)
        for body in images[:4]:
            httpx.post(f"{server.url}/v1/segment?format=label", content=body, timeout=120)
        before = scrape(server.url)
        result = asyncio.run(load(server.url, images, args.clients, args.seconds, args.timeout, args.hostile))
        after = scrape(server.url)
        batches = after.get("pixelseg_batch_size_count", 0) - before.get("pixelseg_batch_size_count", 0)
        imgs = after.get("pixelseg_batch_size_sum", 0) - before.get("pixelseg_batch_size_sum", 0)
        result["mean_batch"] = imgs / batches if batches else float("nan")
        result["max_batch"] = max_batch
        return result
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="run folder (default: train a small LR-ASPP run in a temp folder)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    ap.add_argument("--images", type=int, default=64, help="distinct images cycled through")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--compare-batching", action="store_true", help="also run with --max-batch 1 and print the ratio")
    ap.add_argument("--timeout", type=float, default=60.0, help="client timeout per request (s)")
    ap.add_argument("--hostile", type=float, default=0.0,
                    help="fraction of uploads that are bombs, truncated, empty or not images (must get a 4xx)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="pixelseg-load-") as tmp:
        run = args.run
        if run is None:
            t0 = time.perf_counter()
            run = train_run(Path(tmp))
            print(f"trained {run} in {time.perf_counter() - t0:.0f} s")
        info = RunFolder(run).info()
        images = make_images(args.images, tuple(args.size))
        print(f"model: {info.model} ({info.encoder or 'default encoder'}), network input "
              f"{list(info.preprocessing.image_size)}, uploads {args.size[0]}x{args.size[1]} PNG "
              f"(~{np.mean([len(b) for b in images]) / 1024:.0f} KB); {args.clients} clients x {args.seconds:g} s; "
              f"backend {args.backend}, {args.workers} worker(s)")
        configs = ([1] if args.compare_batching and args.max_batch != 1 else []) + [args.max_batch]
        results = [run_config(Path(run), args, images, mb) for mb in configs]

    print()
    print("| max batch | requests | throughput (req/s) | p50 ms | p90 ms | p99 ms | max ms | mean batch | 5xx | dropped |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['max_batch']} | {r['ok']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['mean_batch']:.2f} | {r['server_errors']} | {r['dropped']} |")
    for r in results:
        parts = ", ".join(f"{k} {v:.0f} ms" for k, v in r["server_ms"].items())
        print(f"max batch {r['max_batch']}: mean time inside the server per request: {parts} "
              "(model = waiting for and running the model)")
        if r["hostile_refused"]:
            print(f"max batch {r['max_batch']}: hostile uploads refused with {r['hostile_refused']} (4xx, as they must)")
    if len(results) == 2:
        a, b = results
        print(f"\nbatching (max {b['max_batch']}) vs none: throughput x{b['throughput_rps'] / a['throughput_rps']:.2f}, "
              f"p50 x{b['p50_ms'] / a['p50_ms']:.2f}, p99 x{b['p99_ms'] / a['p99_ms']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=2))
    bad = [r for r in results if r["server_errors"] or r["dropped"]]
    for r in bad:
        print(f"FAIL (max batch {r['max_batch']}): {r['server_errors']} 5xx, {r['dropped']} dropped "
              f"{r['statuses']} {r['dropped_kinds']}", file=sys.stderr)
    if not bad:
        print("OK: no 5xx, no dropped request")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
