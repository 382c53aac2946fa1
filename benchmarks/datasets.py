"""Dataset layer costs on this machine: indexing, per-mask decoding per format, the doctor, conversion.

    .venv/bin/python benchmarks/datasets.py [--n 200] [--size 256 512]

Writes N image/mask pairs (noise images, block masks) in the Cityscapes, color-mask, COCO and folder layouts
to a temporary folder, then times, in one run:
  - open_dataset (indexing only: no pixel is decoded)
  - decoding one mask: plain index PNG vs each format's decoder (lookup table, color table, polygons)
  - the doctor (verify-dataset: every image and mask decoded, hashed, checked) with 1 and 4 threads
  - data convert to the folder format
Ratios are taken within the run, so they hold on a busy machine better than absolute times.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pixelseg.data.tools.convert import convert  # noqa: E402
from pixelseg.data.tools.doctor import diagnose  # noqa: E402
from pixelseg.data.formats import open_dataset  # noqa: E402
from pixelseg.data.labels import load_mask  # noqa: E402


def blocks(rng, values, h, w, cell=32):
    cells = rng.choice(np.asarray(values), size=(-(-h // cell), -(-w // cell)))
    return np.kron(cells, np.ones((cell, cell), cells.dtype))[:h, :w]


def write(root: Path, n: int, h: int, w: int) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    roots = {k: root / k for k in ("folder", "cityscapes", "colormask", "coco")}
    colors = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
    (roots["folder"]).mkdir(parents=True)
    (roots["folder"] / "classes.json").write_text(json.dumps({"names": ["a", "b", "c", "d"]}))
    (roots["colormask"]).mkdir(parents=True)
    (roots["colormask"] / "classes.json").write_text(json.dumps({"names": ["a", "b", "c", "d"],
                                                                 "colors": [list(c) for c in colors]}))
    coco = {s: {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]} for s in ("train", "val")}
    for i in range(n):
        split = "val" if i % 10 == 0 else "train"
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        idx = blocks(rng, [0, 1, 2, 3], h, w)
        stem = f"img{i:05d}"
        for k in ("folder", "colormask"):
            (roots[k] / split / "images").mkdir(parents=True, exist_ok=True)
            (roots[k] / split / "masks").mkdir(parents=True, exist_ok=True)
            img.save(roots[k] / split / "images" / f"{stem}.jpg", quality=90)
        Image.fromarray(idx.astype(np.uint8)).save(roots["folder"] / split / "masks" / f"{stem}.png")
        Image.fromarray(np.asarray(colors, np.uint8)[idx]).save(roots["colormask"] / split / "masks" / f"{stem}.png")
        city = roots["cityscapes"]
        (city / "leftImg8bit" / split / "bench").mkdir(parents=True, exist_ok=True)
        (city / "gtFine" / split / "bench").mkdir(parents=True, exist_ok=True)
        img.save(city / "leftImg8bit" / split / "bench" / f"bench_{i:06d}_000019_leftImg8bit.png", compress_level=1)
        Image.fromarray(np.asarray([7, 8, 11, 26], np.uint8)[idx]).save(
            city / "gtFine" / split / "bench" / f"bench_{i:06d}_000019_gtFine_labelIds.png")
        (roots["coco"] / split).mkdir(parents=True, exist_ok=True)
        img.save(roots["coco"] / split / f"{stem}.jpg", quality=90)
        coco[split]["images"].append({"id": i, "file_name": f"{stem}.jpg", "height": h, "width": w})
        for k in range(8):   # 8 polygons per image
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 60)
            t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            poly = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).ravel().round(1).tolist()
            coco[split]["annotations"].append({"id": len(coco[split]["annotations"]), "image_id": i, "category_id": 1,
                                               "segmentation": [poly], "iscrowd": 0})
    (roots["coco"] / "annotations").mkdir()
    for s, d in coco.items():
        (roots["coco"] / "annotations" / f"instances_{s}.json").write_text(json.dumps(d))
    return roots


def timed(fn, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, nargs=2, default=[256, 512])
    a = ap.parse_args()
    h, w = a.size
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"data: {a.n} images of {h}x{w}")
    with tempfile.TemporaryDirectory() as tmp:
        roots = write(Path(tmp), a.n, h, w)
        print("\nindexing (open_dataset, no pixel decoded)")
        for k, r in roots.items():
            print(f"  {k:<11} {timed(lambda: open_dataset(r)) * 1e3:8.1f} ms")
        print("\ndecoding one mask (mean over the first 20), relative to a plain index PNG")
        base = None
        for k, r in roots.items():
            samples = open_dataset(r).splits["train"][:20]
            t = timed(lambda: [load_mask(s) for s in samples]) / len(samples)
            base = base or t
            print(f"  {k:<11} {t * 1e3:8.2f} ms  ({t / base:.2f}x)")
        print("\ndoctor (every image + mask decoded, hashed, checked), folder layout")
        t1 = timed(lambda: diagnose(roots["folder"], workers=1))
        t4 = timed(lambda: diagnose(roots["folder"], workers=4))
        print(f"  1 thread  {a.n / t1:7.1f} images/s\n  4 threads {a.n / t4:7.1f} images/s  ({t1 / t4:.2f}x)")
        print("\nconvert to the folder format (4 threads)")
        for k in ("cityscapes", "colormask", "coco"):
            out = Path(tmp) / f"conv_{k}"
            t = timed(lambda: convert(roots[k], out, workers=4))
            print(f"  {k:<11} {a.n / t:7.1f} images/s")


if __name__ == "__main__":
    main()
