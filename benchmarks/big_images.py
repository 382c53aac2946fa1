"""Big images with small objects: the old whole-image resize recipe vs the crop-at-scale recipe.

    python benchmarks/big_images.py --out /tmp/bigbench --minutes 8 [--size 1536] [--train 24 --val 6]
    python benchmarks/big_images.py --plans            # scale/crop the recipe picks for 2048x1024 and 6000^2
    python benchmarks/big_images.py --data DIR --out /tmp/b  # the same two runs on a folder dataset of yours

Big images pixelseg did not make: DigitScenes at 1536^2 (real MNIST digits of 42-84 px on real photos):
    python3 ../shared/tuning/make_digit_scenes.py --out /tmp/bigdigits --size 1536 --train 24 --val 6 \
        --min-objects 60 --max-objects 120

Generates (once) a set of SIZE^2 scenes with 60-120 objects of 30-60 px in 10 classes (+ background),
train and val scenes drawn from disjoint seeds, then runs, one after the other on this machine:
    resize  `pixelseg train --data D --max-minutes M --image-size 256 256` (the old default: whole image to 256)
    crop    `pixelseg train --data D --max-minutes M` (the recipe: crops at a scale chosen from the objects)
and prints val mIoU (metrics.json, the best weights on the whole val split at original resolution), steps
a minute and the data-wait share of a step (metrics.csv).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from pixelseg.run.folder import RunFolder  # noqa: E402

N_CLASSES = 11
SHAPES = ("circle", "square", "triangle", "cross", "ring")


def _object(canvas, mask, rng, cls: int, cy: int, cx: int, r: int) -> None:
    shape = SHAPES[(cls - 1) % 5]
    warm = cls <= 5
    base = np.array([200, 90, 60] if warm else [60, 110, 210], np.float64)
    color = np.clip(base + rng.normal(0, 25, 3), 0, 255).tolist()
    m = np.zeros(mask.shape, np.uint8)
    if shape == "circle":
        cv2.circle(m, (cx, cy), r, 1, -1)
    elif shape == "square":
        cv2.rectangle(m, (cx - r, cy - r), (cx + r, cy + r), 1, -1)
    elif shape == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(m, [pts], 1)
    elif shape == "cross":
        t = max(3, r // 3)
        cv2.rectangle(m, (cx - r, cy - t), (cx + r, cy + t), 1, -1)
        cv2.rectangle(m, (cx - t, cy - r), (cx + t, cy + r), 1, -1)
    else:
        cv2.circle(m, (cx, cy), r, 1, max(3, r // 3))
    on = m.astype(bool)
    canvas[on] = color
    mask[on] = cls


def scene(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    low = rng.normal(0, 1, (size // 64 + 1, size // 64 + 1, 3))
    bg = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC) * 18 + np.array([110, 120, 100])
    canvas = np.clip(bg + rng.normal(0, 6, (size, size, 3)), 0, 255)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(60, 121))):
        cls = int(rng.integers(1, N_CLASSES))
        r = int(rng.integers(15, 31))                  # extent 30-60 px
        cy, cx = (int(v) for v in rng.integers(r, size - r, 2))
        _object(canvas, mask, rng, cls, cy, cx, r)
    return canvas.astype(np.uint8), mask


def generate(root: Path, size: int, n_train: int, n_val: int) -> Path:
    if (root / "classes.json").is_file():
        return root
    for split, n, offset in (("train", n_train, 0), ("val", n_val, 10_000)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, mask = scene(offset + i, size)
            cv2.imwrite(str(root / split / "images" / f"s{i:03d}.png"), image[:, :, ::-1])
            cv2.imwrite(str(root / split / "masks" / f"s{i:03d}.png"), mask)
    names = ["background"] + [f"{'warm' if c <= 5 else 'cool'}_{SHAPES[(c - 1) % 5]}" for c in range(1, N_CLASSES)]
    (root / "classes.json").write_text(json.dumps({"names": names}))
    return root


def run(data: Path, out: Path, minutes: float, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pixelseg", "train", "--data", str(data), "--max-minutes", str(minutes),
           "--out", str(out), "--no-report", *extra]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    folder = RunFolder(out)
    metrics = folder.metrics()
    rows = folder.history()
    last = rows[-1]
    steps = int(last["step"])
    train_s = float(last["elapsed_s"])
    cfg = folder.config_path.read_text()
    return {"mIoU": metrics.get("mIoU", metrics.get("miou")), "steps_per_min": steps / max(train_s, 1e-9) * 60,
            "data_wait": float(last["data_wait"] or 0), "wall_s": time.time() - t0,
            "scale": _yaml_value(cfg, "scale"), "crop": _yaml_value(cfg, "image_size")}


def _yaml_value(text: str, key: str) -> str:
    import yaml
    return str(yaml.safe_load(text)["data"].get(key))


def plans() -> None:
    """The scale and crop resolve() picks for a Cityscapes-layout frame and an aerial tile, CPU and GPU."""
    import tempfile

    from pixelseg.config import Config
    from pixelseg.data.formats import open_dataset
    from pixelseg.engine.recipe import Hardware, resolve
    cases = {"cityscapes 2048x1024 (objects 20-200 px)": ((1024, 2048), (10, 100)),
             "aerial 6000x6000 (objects 12-40 px)": ((6000, 6000), (6, 20))}
    hws = [Hardware("cpu", "2-core CPU", 2), Hardware("cuda:0", "GPU 80 GB", 16, 80.0)]
    for name, ((h, w), (rlo, rhi)) in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            rng = np.random.default_rng(0)
            for split, n in (("train", 2), ("val", 1)):
                (root / split / "images").mkdir(parents=True)
                (root / split / "masks").mkdir(parents=True)
                for i in range(n):
                    mask = np.zeros((h, w), np.uint8)
                    for _ in range(80):
                        r = int(rng.integers(rlo, rhi))
                        cv2.circle(mask, (int(rng.integers(0, w)), int(rng.integers(0, h))), r,
                                   int(rng.integers(1, 4)), -1)
                    cv2.imwrite(str(root / split / "images" / f"{i}.png"), np.zeros((h, w, 3), np.uint8))
                    cv2.imwrite(str(root / split / "masks" / f"{i}.png"), mask)
            index = open_dataset(str(root), "auto", 0.1)
            index.splits["train"] = index.splits["train"] * 500     # the batch as for a real dataset's 1000 frames
            for hw in hws:
                cfg, chosen = resolve(Config().replace(**{"data.root": str(root), "train.out": "x"}), index, hw)
                why = {k: w for k, _, w in chosen}
                print(f"{name} on {hw.name}: scale {cfg.data.scale}, crop {cfg.data.crop}, batch "
                      f"{cfg.train.batch_size}\n  scale: {why.get('data.scale')}\n  crop: {why.get('data.crop')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/pixelseg-big-bench")
    ap.add_argument("--minutes", type=float, default=8)
    ap.add_argument("--size", type=int, default=1536)
    ap.add_argument("--train", type=int, default=24)
    ap.add_argument("--val", type=int, default=6)
    ap.add_argument("--only", choices=("resize", "crop"))
    ap.add_argument("--data", help="a folder dataset to use instead of the generated scenes")
    ap.add_argument("--extra", default="", help="flags added to both runs, e.g. '--threads 1' on a loaded machine")
    ap.add_argument("--plans", action="store_true", help="only print the recipe's choices for big frames")
    a = ap.parse_args()
    if a.plans:
        plans()
        return
    out = Path(a.out)
    data = Path(a.data) if a.data else generate(out / "data", a.size, a.train, a.val)
    recipes = {"resize": ["--image-size", "256", "256"], "crop": []}
    what = f"{data}" if a.data else f"{a.size}^2 scenes, {a.train} train / {a.val} val"
    print(f"{what}, {a.minutes:g} min each, load {os.getloadavg()[0]:.2f}"
          + (f", extra flags: {a.extra}" if a.extra else ""))
    print(f"{'recipe':8} {'val mIoU':>8} {'steps/min':>9} {'data wait':>9}  scale / crop")
    for name, extra in recipes.items():
        if a.only and name != a.only:
            continue
        r = run(data, out / f"run-{name}", a.minutes, extra + a.extra.split())
        print(f"{name:8} {r['mIoU']:8.4f} {r['steps_per_min']:9.1f} {r['data_wait']:9.1%}  {r['scale']} / {r['crop']}",
              flush=True)


if __name__ == "__main__":
    main()
