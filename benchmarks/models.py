"""The model zoo's speed/accuracy frontier on this machine: for each model, parameters, GFLOPs
(multiply-accumulates) at 512x512, CPU latency of one 512x512 image, and the validation mIoU after the
same short training budget on the built-in data.

    python benchmarks/models.py                       # every model, 1 epoch each on 400 images of 128x128
    python benchmarks/models.py --epochs 5 --models fast_scnn bisenetv2 lraspp unet
    python benchmarks/models.py --minutes 2           # every model for 2 minutes of training (the frontier)
    python benchmarks/models.py --no-train            # params, GFLOPs and latency only

The training budget is counted in epochs (the same batches for every model), or with --minutes in wall
time (what a user with that much time gets from each model); the steps and wall time of each run are
printed, so the table shows both what a model learns per step and what a step costs.
Latency: eval mode, batch 1, fp32, median of --repeats runs after one warm-up (--threads N to pin threads).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import pixelseg
from pixelseg.data.tools.synth import generate
from pixelseg.models import MODELS, build_model, onnx_support
from pixelseg.models.profile import profile
from pixelseg.run.folder import RunFolder  # noqa: E402


def latency_ms(name: str, size: int, repeats: int) -> float:
    model = build_model(name, 6, 3).eval()
    x = torch.randn(1, 3, size, size)
    times = []
    with torch.inference_mode():
        model(x)                                   # warm-up: allocator, oneDNN kernel selection
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    ap.add_argument("--epochs", type=int, default=1, help="training budget per model (default %(default)s)")
    ap.add_argument("--minutes", type=float, help="train each model for this many minutes instead of --epochs "
                                                   "(the frontier at equal wall time; needs a quiet machine)")
    ap.add_argument("--image-size", type=int, default=128, help="training size (default %(default)s)")
    ap.add_argument("--latency-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch CPU threads for the latency (default: torch's choice)")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--data", help="dataset root (default: the built-in data, 400 + 100 images of 128x128)")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    names = a.models or MODELS.names()
    for n in names:
        MODELS.get(n)                              # a typo fails now, not after an hour
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(a.data) if a.data else Path(tmp) / "data"
        if not a.no_train and not a.data:
            generate(data, n_train=400, n_val=100, size=(128, 128), seed=0, workers=2)
        for name in names:
            row = {"model": name, "family": MODELS.get(name).info.get("family", "")}
            row.update(profile(name, 6, size=(512, 512)))
            row["onnx"] = onnx_support(name)[0]
            row["latency_ms"] = round(latency_ms(name, a.latency_size, a.repeats), 1)
            if not a.no_train:
                t0 = time.time()
                budget = {"max_minutes": a.minutes} if a.minutes else {"epochs": a.epochs}
                run = pixelseg.train(data, name, out=str(Path(tmp) / name), batch_size=8, augment="light",
                                     image_size=(a.image_size, a.image_size), num_workers=0, seed=0, quiet=True,
                                     **budget)
                row["mIoU"] = RunFolder(run).metrics()["mIoU"]
                row["steps"] = int(RunFolder(run).history()[-1]["step"])
                row["train_s"] = round(time.time() - t0)
            rows.append(row)
            print(json.dumps(row), flush=True)
    host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    budget = f"{a.minutes:g} min" if a.minutes else f"{a.epochs} epoch(s)"
    print(f"\nmodels on {host}; GFLOPs and latency at 512x512; mIoU after {budget} at "
          f"{a.image_size}px on {'the built-in data' if not a.data else a.data}")
    # on a shared machine absolute times drift with the load; the ratio to one reference model of the same
    # run is the steadier number
    ref = next((r for r in rows if r["model"] == "lraspp"), rows[0])
    print(f"| model | family | params | GFLOPs | CPU ms | x {ref['model']} | ONNX | "
          f"{'' if a.no_train else 'val mIoU | steps | train s |'}")
    print(f"|---|---|---:|---:|---:|---:|---|{'' if a.no_train else '---:|---:|---:|'}")
    for r in rows:
        tail = "" if a.no_train else f" {r['mIoU']:.3f} | {r['steps']} | {r['train_s']} |"
        print(f"| {r['model']} | {r['family']} | {r['params'] / 1e6:.2f}M | {r['gflops']:.1f} | {r['latency_ms']:.0f} | "
              f"{r['latency_ms'] / ref['latency_ms']:.2f} | {'yes' if r['onnx'] else 'no'} |{tail}")
    if a.json:
        Path(a.json).write_text(json.dumps({"host": host, "budget": budget, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
