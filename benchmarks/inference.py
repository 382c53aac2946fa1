"""The README's inference table, measured in one process so every ratio compares like with like.

    .venv/bin/python benchmarks/inference.py [--out bench-out] [--train-minutes 4] [--iters 10]

1. U-Net/resnet18, 512x512, batch 1, 2 threads: eager PyTorch vs torch-opt (inference_mode, channels_last,
   bf16 where the CPU has it) vs ONNX Runtime vs OpenVINO fp32/bf16 vs INT8 (QDQ, calibrated on the
   training images), on the weights of a U-Net trained briefly on the built-in data; latency p50/p95,
   speedup over eager, argmax agreement with eager, and the mIoU of fp32 vs INT8 on the val split.
2. The fp32 paths against the FLOPs bound: model FLOPs / the machine's measured fp32 matmul peak.
3. A real-time model (LR-ASPP) at 1024x512 end to end: JPEG decode, preprocess, infer, argmax.
4. Peak memory of a 10000x10000 sliding-window prediction (the label map is the only full-size output).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def matmul_peak_gflops(threads: int, n: int = 2048, seconds: float = 2.0) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    return 2 * n ** 3 * k / (time.perf_counter() - t0) / 1e9


def model_gflops(run: Path, size) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from pixelseg.run.folder import RunFolder
    model = (RunFolder(run).info()).load_model()
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model(torch.randn(1, 3, *size))
    return fc.get_total_flops() / 1e9


def train_unet(root: Path, minutes: float) -> Path:
    import pixelseg
    from pixelseg.data.tools.synth import generate
    data = root / "data"
    generate(data, n_train=300, n_val=50, size=(128, 128), seed=0, workers=2)
    return pixelseg.train(data, out=str(root / "run"), model="unet", encoder="resnet18", max_minutes=minutes,
                          threads=2, num_workers=0, quiet=True)


def realtime(threads: int, frames: int = 30, models=("fast_scnn", "lraspp", "bisenetv2")) -> list[dict]:
    """Real-time models (random weights: speed does not depend on them) on 1024x512 JPEG frames, end to end:
    JPEG decode, BGR->RGB, preprocess, network, argmax -> a label map. Frames are already at the network's
    size, so on OpenVINO normalization and argmax run inside the graph (Predictor's real-time path)."""
    from pixelseg.data.tools.synth import make_scene
    from pixelseg.inference.predictor import Predictor
    from pixelseg.inference.backends import available
    from pixelseg.inference.bench import bf16_supported, model_run

    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(8):
        image = make_scene(rng, (512, 1024))[0]
        jpegs.append(cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        calib = Path(tmp) / "calib"               # INT8 calibration frames: scenes like the timed ones
        calib.mkdir()
        for i in range(16):
            cv2.imwrite(str(calib / f"{i}.jpg"), cv2.cvtColor(make_scene(rng, (512, 1024))[0], cv2.COLOR_RGB2BGR))
        for name in models:
            run = model_run(name, (512, 1024), 19, Path(tmp) / name)
            configs = [("torch", "fp32", run), ("openvino", "fp32", run)]
            if bf16_supported():
                configs += [("openvino", "bf16", run)]
            if available("openvino") and available("onnxruntime"):
                from pixelseg.deploy.export import export_run
                rep = export_run(run, "onnx", int8=True, calib=calib, calib_count=16, min_agreement=0.0,
                                 out=Path(tmp) / f"{name}-int8.onnx", log=lambda m: None)
                configs += [("openvino", "int8", rep.path)]
            for backend, precision, source in configs:
                if backend != "torch" and not available(backend):
                    continue
                pred = Predictor(source, "cpu", backend=backend, precision="fp32" if precision == "int8" else precision,
                                 threads=threads)

                def one(buf, pred=pred):
                    rgb = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                    return pred.predict(rgb)
                for buf in jpegs[:3]:
                    one(buf)
                t0 = time.perf_counter()
                for i in range(frames):
                    one(jpegs[i % len(jpegs)])
                fps = frames / (time.perf_counter() - t0)
                rows.append({"model": name, "backend": backend, "precision": precision, "fps": fps})
                print(f"  {name} 1024x512 {backend} {precision}: {fps:.1f} fps end to end", flush=True)
    return rows


def big_image_memory(threads: int, side: int = 10000, tile: int = 1024) -> dict:
    """Sliding window over a side x side RGB image with LR-ASPP; peak RSS above the input's baseline."""
    from pixelseg.inference.predictor import Predictor
    from pixelseg.inference.bench import (
        current_memory_mb,
        model_run,
        peak_memory_mb,
        reset_peak_memory,
    )

    with tempfile.TemporaryDirectory() as tmp:
        run = model_run("lraspp", (tile, tile), 6, Path(tmp) / "run")
        backend = "openvino" if __import__("importlib").util.find_spec("openvino") else "torch"
        pred = Predictor(run, "cpu", backend=backend, threads=threads, tile=(tile, tile), overlap=0.25, window_batch=1)
        pred.predict(np.zeros((tile, tile, 3), np.uint8))            # compile / warm up outside the measurement
        image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        base = current_memory_mb()
        reset_peak_memory()
        t0 = time.perf_counter()
        label = pred.predict(image)
        seconds = time.perf_counter() - t0
        peak = peak_memory_mb()
    full_probs_mb = 6 * side * side * 4 / 2 ** 20
    return {"side": side, "tile": tile, "backend": backend, "seconds": seconds, "baseline_mb": base, "peak_mb": peak,
            "above_baseline_mb": peak - base, "label_mb": label.nbytes / 2 ** 20, "input_mb": image.nbytes / 2 ** 20,
            "full_probability_map_mb": full_probs_mb}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out", help="folder for the trained run and results.json")
    ap.add_argument("--train-minutes", type=float, default=4.0)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=30, help="timed frames per real-time configuration")
    ap.add_argument("--calib-count", type=int, default=300, help="INT8 calibration images (default %(default)s)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["latency", "realtime", "memory"])
    a = ap.parse_args()
    from pixelseg.deploy.export import export_run
    from pixelseg.inference.bench import bench, cpu_name
    from pixelseg.run.folder import RunFolder

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"cpu": cpu_name(), "threads": a.threads, "torch": torch.__version__}
    import os
    results["load_average_at_start"] = os.getloadavg()[0]
    print(f"machine: {results['cpu']}, {os.cpu_count()} cores visible, load {results['load_average_at_start']:.1f}", flush=True)

    if "latency" not in a.skip:
        run = out / "run"
        if not RunFolder(run).is_run():
            print(f"training U-Net/resnet18 for {a.train_minutes:g} min on the built-in data ...", flush=True)
            run = train_unet(out, a.train_minutes)
        print("INT8 export (calibrated on the training images) and val mIoU, fp32 vs INT8 ...", flush=True)
        rep = export_run(run, "onnx", int8=True, calib_count=a.calib_count, min_agreement=0.0)
        results["int8_export"] = rep.to_dict()
        print(f"  agreement {rep.agreement:.4%}, mIoU {rep.miou}", flush=True)
        res = bench(run, (512, 512), 1, None, a.threads, a.iters, int8=True, calib_count=a.calib_count,
                    log=lambda m: print("  " + m, flush=True))
        results["latency"] = res
        peak = matmul_peak_gflops(a.threads)
        gf = model_gflops(run, (512, 512))
        ideal_ms = gf / peak * 1e3
        results["flops"] = {"model_gflops": gf, "matmul_peak_gflops": peak, "ideal_ms": ideal_ms}
        for r in res["rows"]:
            r["vs_flops_bound"] = r["p50_ms"] / ideal_ms
    if "realtime" not in a.skip:
        print("real-time model at 1024x512 ...", flush=True)
        results["realtime"] = realtime(a.threads, a.frames)
    if "memory" not in a.skip:
        print("10000x10000 sliding window ...", flush=True)
        results["big_image"] = big_image_memory(a.threads)
        print(f"  {results['big_image']}", flush=True)
    results["load_average_at_end"] = os.getloadavg()[0]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print_markdown(results)
    return 0


def print_markdown(r: dict) -> None:
    print(f"\nMachine: {r['cpu']}, {r['threads']} threads, torch {r['torch']} "
          f"(load average {r['load_average_at_start']:.1f} at start, {r['load_average_at_end']:.1f} at end)\n")
    if "latency" in r:
        f = r["flops"]
        print(f"U-Net/resnet18, 512x512, batch 1 ({f['model_gflops']:.1f} GFLOP; fp32 matmul peak "
              f"{f['matmul_peak_gflops']:.0f} GFLOP/s -> FLOPs bound {f['ideal_ms']:.0f} ms)\n")
        print("| path | p50 ms | p95 ms | speedup vs eager | argmax agreement | x FLOPs bound |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in r["latency"]["rows"]:
            print(f"| {row['path']} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | {row['speedup']:.2f}x | "
                  f"{row['agreement']:.2%} | {row['vs_flops_bound']:.2f} |")
        e = r["int8_export"]
        if e.get("miou"):
            m = e["miou"]
            print(f"\nINT8 vs fp32 on the val split ({e['image_source']}): agreement {e['agreement']:.2%}, "
                  f"mIoU {m['fp32']:.4f} -> {m['int8']:.4f} ({100 * m['delta']:+.2f} points)")
    if "realtime" in r:
        print("\nReal-time models at 1024x512, end to end (JPEG decode, preprocess, infer, argmax; target 30 fps):\n")
        print("| model | backend | precision | fps |")
        print("|---|---|---|---:|")
        for row in r["realtime"]:
            print(f"| {row['model']} | {row['backend']} | {row['precision']} | {row['fps']:.1f} |")
    if "big_image" in r:
        b = r["big_image"]
        print(f"\n{b['side']}x{b['side']} sliding window ({b['tile']} tiles, {b['backend']}): {b['seconds']:.0f} s, "
              f"peak RSS {b['peak_mb']:.0f} MB = {b['above_baseline_mb']:.0f} MB above the loaded input "
              f"({b['input_mb']:.0f} MB) and model; the label map is {b['label_mb']:.0f} MB, a full probability map "
              f"would be {b['full_probability_map_mb']:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
