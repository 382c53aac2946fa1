"""How fast is the confusion matrix? 20 label maps of 1024 x 2048 (Cityscapes-size), 19 classes + ignore 255.

    python benchmarks/confusion.py [--images 20] [--repeat 5] [--threads N]

Rows (all count the same pixels; every row's matrix is checked equal to the numpy one):
  numpy bincount        the classic masked bincount: mask, t[m] * K + p[m] as int64, np.bincount
  pixelseg              ConfusionMatrix.update, one image per call, uint8 prediction and mask
  pixelseg int64 pred   the same with an int64 prediction (what argmax returns) against a uint8 mask
  pixelseg per-image    ConfusionMatrix(per_image=True), batches of 4: one K x K matrix per image kept
  torchmetrics          MulticlassJaccardIndex(19, ignore_index=255, average=None), one image per call,
                        its defaults (validate_args=True); shown when torchmetrics is importable
Each pass over the images is timed --repeat times, the rows taking turns; the table gives the median (and
the fastest) in ms per image, and the ratios of the medians. The load average is printed before and after:
read the numbers against it, the machine may be shared. On an oversubscribed machine torch's multi-threaded
ops stall waiting for a descheduled thread (2 cores, load 5: 67 ms/image at 2 threads, 0.5 at 1 thread);
--threads 1 measures the single-threaded cost, like numpy's.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from pixelseg.measure.metrics import ConfusionMatrix

K, IGNORE = 19, 255


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), " \
           f"numpy {np.__version__}"


def label_maps(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Masks made of 32 x 32 blocks of one class (objects, not noise), 10 % ignore blocks; predictions that
    agree on about 85 % of the pixels."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, K, size=(n, h // 32, w // 32), dtype=np.uint8)
    blocks[rng.random(blocks.shape) < 0.1] = IGNORE
    target = np.ascontiguousarray(blocks.repeat(32, 1).repeat(32, 2))
    noise = rng.random(target.shape) < 0.15
    pred = np.where(target == IGNORE, rng.integers(0, K, size=target.shape, dtype=np.uint8), target)
    pred[noise] = rng.integers(0, K, size=int(noise.sum()), dtype=np.uint8)
    return pred, target


def numpy_bincount(pred, target) -> np.ndarray:
    total = np.zeros((K, K), np.int64)
    for p, t in zip(pred, target):
        m = (t >= 0) & (t < K)
        total += np.bincount(K * t[m].astype(np.int64) + p[m], minlength=K * K).reshape(K, K)
    return total


def pixelseg_update(pred, target) -> np.ndarray:
    cm = ConfusionMatrix(K, IGNORE)
    for p, t in zip(pred, target):
        cm.update(p, t)
    return cm.matrix


def pixelseg_per_image(pred, target, batch: int = 4) -> np.ndarray:
    cm = ConfusionMatrix(K, IGNORE, per_image=True)
    for i in range(0, len(pred), batch):
        cm.update(pred[i:i + batch], target[i:i + batch])
    mats = cm.per_image
    assert mats.shape == (len(pred), K, K)
    return mats.sum(0)


def torchmetrics_row():
    try:
        from torchmetrics.classification import MulticlassJaccardIndex
    except ImportError:
        return None

    def run(pred, target) -> np.ndarray:
        metric = MulticlassJaccardIndex(num_classes=K, ignore_index=IGNORE, average=None)
        for p, t in zip(pred, target):
            metric.update(p[None], t[None])
        return metric.confmat.numpy()
    return run


def timed(rows, repeat: int) -> dict[str, list[float]]:
    """Seconds per pass of every row, the rows taking turns in each round: a burst of load from another
    process then slows all rows alike instead of whichever ran during it."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    reference = None
    for _ in range(repeat):
        for name, fn, fn_args in rows:
            t0 = time.perf_counter()
            mat = fn(*fn_args)
            times[name].append(time.perf_counter() - t0)
            reference = mat if reference is None else reference
            if not np.array_equal(mat, reference):
                raise SystemExit(f"{name}: its matrix differs from numpy's")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=5, help="passes over the images per row (median reported)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.images
    print(f"machine: {machine()}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    pred, target = label_maps(n, args.height, args.width)
    pred_t, target_t = torch.from_numpy(pred), torch.from_numpy(target)
    pred64 = pred_t.long()
    rows = [("numpy bincount", numpy_bincount, (pred, target)),
            ("pixelseg", pixelseg_update, (pred_t, target_t)),
            ("pixelseg int64 pred", pixelseg_update, (pred64, target_t)),
            ("pixelseg per-image (batch 4)", pixelseg_per_image, (pred_t, target_t))]
    tm = torchmetrics_row()
    if tm is not None:
        rows.append(("torchmetrics", tm, (pred64, target_t.long())))
    results = {name: (statistics.median(t) * 1000 / n, min(t) * 1000 / n)
               for name, t in timed(rows, args.repeat).items()}
    base = results["numpy bincount"][0]
    tm_ms = results.get("torchmetrics", (None,))[0]
    print(f"{n} label maps of {args.height}x{args.width}, {K} classes + ignore {IGNORE}, "
          f"{args.repeat} passes (median, fastest)")
    print(f"{'':30s} {'ms/image':>9s} {'fastest':>8s} {'numpy/this':>11s} {'torchmetrics/this':>18s}")
    for name, (med, best) in results.items():
        vs_tm = f"{tm_ms / med:.1f}x" if tm_ms else "—"
        print(f"{name:30s} {med:9.2f} {best:8.2f} {base / med:10.2f}x {vs_tm:>18s}")
    if tm is None:
        print("torchmetrics: not installed, column left out (pip install torchmetrics to compare)")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
