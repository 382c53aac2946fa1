"""`pixelseg bench`: latency p50/p95, throughput and peak memory of a run (or a registered model with
random weights) on every backend, with the speedup over plain PyTorch eager and the argmax agreement
with it, measured in one process so the ratios are comparable.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pixelseg.errors import PixelsegError

PATHS = ("eager", "torch", "torch-bf16", "onnxruntime", "openvino", "openvino-bf16", "onnxruntime-int8", "openvino-int8")


@dataclass
class BenchRow:
    path: str
    p50_ms: float
    p95_ms: float
    throughput: float        # images per second at this batch size
    peak_mb: float           # peak resident memory this path added while loading and warming up
    speedup: float           # eager p50 / this p50
    agreement: float         # argmax agreement with eager on the benchmark input

    def to_dict(self) -> dict:
        return asdict(self)


# -- peak memory ---------------------------------------------------------------------------------------------
# Linux keeps the process's peak RSS (VmHWM); writing 5 to clear_refs resets it, so each measurement sees its
# own peak rather than the largest one so far. Elsewhere the numbers are the process-wide peak.
def reset_peak_memory() -> None:
    with contextlib.suppress(OSError):
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
            f.write("5")


def peak_memory_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_memory_mb() -> float:
    with contextlib.suppress(OSError), open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def model_run(name: str, size: tuple[int, int], num_classes: int, folder: Path, encoder: str | None = None,
              in_channels: int = 3, seed: int = 0) -> Path:
    """A run folder for a registered model with seeded random weights, preprocessing at `size`."""
    from pixelseg.data.classes import ClassTable
    from pixelseg.models import build_model, default_mean_std
    from pixelseg.run.folder import Preprocessing, RunFolder, RunInfo

    torch.manual_seed(seed)
    model = build_model(name, num_classes, in_channels, encoder).eval()
    mean, std = default_mean_std(in_channels)
    names = tuple(f"class{i}" for i in range(num_classes))
    colors = tuple(tuple(int(v) for v in np.random.default_rng(i).integers(0, 256, 3)) for i in range(num_classes))
    info = RunInfo(folder, name, encoder, ClassTable(names, colors, 255), Preprocessing(tuple(size), tuple(mean), tuple(std), in_channels), {})
    folder.mkdir(parents=True, exist_ok=True)
    run = RunFolder(folder)
    run.write_info(info)
    run.save_weights(model)
    return folder


def generated_calibration(folder: Path, size: tuple[int, int], in_channels: int, count: int = 16) -> Path:
    """Seeded smooth-noise images for INT8 calibration of a random-weights model (bench of a model name):
    only the speed of the INT8 graph is measured there, so any plausible activation ranges will do."""
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w = size
    for i in range(count):
        coarse = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), in_channels), dtype=np.uint8)
        image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, in_channels)
        cv2.imwrite(str(folder / f"calib_{i:03d}.png"), image if in_channels != 3 else image[:, :, ::-1])
    return folder


def bench_input(info, size: tuple[int, int], batch: int, log=print) -> torch.Tensor:
    """A real image of the run's data when it is reachable (so agreement is measured where it matters),
    else a seeded random image; normalized at `size`."""
    from pixelseg.data.preprocess import preprocess
    from pixelseg.deploy.export import parity_images
    from pixelseg.run.folder import Preprocessing
    images, _ = parity_images(info, batch, log)
    pre = info.preprocessing
    at = Preprocessing(tuple(size), pre.mean, pre.std, pre.in_channels, pre.resize)
    return torch.stack([preprocess(im, at) for im in images])


def _int8_file(run: Path, fmt: str, calib, calib_count: int, log) -> Path:
    from pixelseg.deploy.export import default_out, export_run
    out = default_out(run, fmt, True)
    if not out.is_file():
        # speed is what is measured here: the usual agreement gate would refuse random-weight models
        export_run(run, fmt, int8=True, calib=calib, calib_count=calib_count, min_agreement=0.0, log=log)
    return out


def bench(source, size: tuple[int, int] | None = None, batch: int = 1, paths=None, threads: int | None = 2,
          iters: int = 20, warmup: int = 3, int8: bool = False, calib=None, calib_count: int = 100,
          num_classes: int = 6, encoder: str | None = None, log=print) -> dict:
    """Benchmark `source` (a run folder or a registered model name). Returns {"rows": [...], "setup": {...}}."""
    from pixelseg.inference.backends import available
    from pixelseg.models import MODELS
    from pixelseg.run.folder import RunFolder

    wanted = list(paths or [p for p in PATHS if int8 or "int8" not in p])
    unknown = [p for p in wanted if p not in PATHS]
    if unknown:
        raise PixelsegError(f"unknown bench path(s) {', '.join(unknown)}; valid: {', '.join(PATHS)}")
    if threads:
        from pixelseg.config import check_threads
        check_threads(threads)                   # before torch spawns them (issue 27)
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        if RunFolder(source).is_run():
            run = Path(source)
        elif str(source) in MODELS:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pixelseg-bench-")))
            run = model_run(str(source), size or (512, 512), num_classes, tmp / "run", encoder)
            if int8 and calib is None:
                log("INT8: calibrating the random-weights model on generated images (pass --calib for your own)")
                calib = generated_calibration(tmp / "calib", size or (512, 512), 3, min(calib_count, 16))
        else:
            raise PixelsegError(f"{source}: neither a run folder (with model.json) nor a registered model name; "
                                "see `pixelseg models`")
        info = RunFolder(run).info()
        size = tuple(size or info.preprocessing.image_size)
        x = bench_input(info, size, batch, log if run == Path(source) else (lambda *_: None))
        cpu = torch.device("cpu")
        if "eager" not in wanted:
            wanted.insert(0, "eager")   # the reference every ratio is taken against
        built, mem = {}, {}
        for path in wanted:
            backend_name = path.split("-")[0]
            if backend_name in ("onnxruntime", "openvino") and not available(backend_name):
                log(f"skipping {path}: {backend_name} is not installed")
                continue
            if path.endswith("bf16") and not bf16_supported():
                log(f"skipping {path}: this CPU has no native bf16 (AVX512-BF16/AMX)")
                continue
            before = current_memory_mb()
            reset_peak_memory()
            fn = _make_path(path, info, run, cpu, threads, calib, calib_count, log)
            for _ in range(max(1, warmup)):
                out = fn(x)
            built[path] = (fn, out.argmax(1))
            mem[path] = peak_memory_mb() - before
        # Round-robin: every round times each path once, so a machine whose load drifts during the run (other
        # jobs, thermal limits) slows all paths alike and the ratios stay fair.
        times: dict[str, list[float]] = {p: [] for p in built}
        for _ in range(iters):
            for path, (fn, _) in built.items():
                t = time.perf_counter()
                fn(x)
                times[path].append(time.perf_counter() - t)
        reference = built["eager"][1]
        t_ref = float(np.percentile(times["eager"], 50))
        rows = []
        for path, (_, labels) in built.items():
            p50, p95 = float(np.percentile(times[path], 50)), float(np.percentile(times[path], 95))
            rows.append(BenchRow(path, p50 * 1e3, p95 * 1e3, batch / p50, mem[path], t_ref / p50,
                                 float((labels == reference).float().mean())))
            log(f"{path:18s} p50 {p50 * 1e3:8.1f} ms  p95 {p95 * 1e3:8.1f} ms  x{t_ref / p50:5.2f}")
        setup = {"model": info.model, "encoder": info.encoder, "size": list(size), "batch": batch, "threads": threads,
                 "iters": iters, "cpu": cpu_name(), "torch": torch.__version__}
        return {"setup": setup, "rows": [r.to_dict() for r in rows]}


def _make_path(path: str, info, run: Path, cpu: torch.device, threads: int, calib, calib_count: int, log):
    """One benchmarked path as a callable: normalized batch -> logits."""
    from pixelseg.inference.backends import (
        OnnxRuntimeBackend,
        OpenVinoBackend,
        TorchBackend,
        cached_onnx,
    )

    precision = "bf16" if path.endswith("bf16") else "fp32"
    if path == "eager":      # plain PyTorch as most code runs it: no_grad, default layout, fp32
        model = info.load_model(cpu)

        def eager(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x)
        return eager
    if path.startswith("torch"):
        return TorchBackend(info.load_model(cpu), cpu, precision, channels_last=True)
    file = (_int8_file(run, "onnx", calib, calib_count, log) if path.endswith("int8")
            else cached_onnx(info, info.load_model(cpu)))
    cls = OnnxRuntimeBackend if path.startswith("onnxruntime") else OpenVinoBackend
    return cls(file, cpu, threads, precision)


def bf16_supported() -> bool:
    try:
        return "BF16" in __import__("openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:
        return torch.backends.mkldnn.is_available() and _cpu_flags() >= {"avx512_bf16"}


def _cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform
    return platform.processor() or platform.machine()
