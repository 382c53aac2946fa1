"""Which training recipe learns most in a fixed wall-clock budget? Trains each candidate with
`pixelseg train` for the same number of minutes on one dataset, one after another on this machine,
and prints a table of the best validation mIoU each reached.

    python benchmarks/recipes.py --data DIR --minutes 3 [--candidates default "unet --lr 3e-3" ...]

"default" means `pixelseg train --data DIR --max-minutes M` with nothing else: the product's own choice.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CANDIDATES = [
    "default",
    "--model unet --encoder resnet18 --lr 1e-3",
    "--model unet --encoder resnet18 --lr 3e-3",
    "--model fpn --encoder resnet18 --lr 3e-3",
    "--model lraspp --lr 3e-3",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES)
    ap.add_argument("--json", help="write the rows here too")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, cand in enumerate(a.candidates):
            out = Path(tmp) / f"run{i}"
            extra = [] if cand == "default" else shlex.split(cand)
            cmd = [sys.executable, "-m", "pixelseg.cli", "train", "--data", a.data, "--max-minutes", str(a.minutes),
                   "--out", str(out), *extra]
            t0 = time.time()
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                rows.append({"candidate": cand, "error": p.stderr.strip().splitlines()[-1]})
                print(f"{cand}: FAILED {rows[-1]['error']}", flush=True)
                continue
            m = json.loads((out / "metrics.json").read_text())
            cfg = (out / "config.yaml").read_text()
            hist = (out / "metrics.csv").read_text().strip().splitlines()
            rows.append({"candidate": cand, "mIoU": m["mIoU"], "pixel_accuracy": m["pixel_accuracy"],
                         "epochs": float(hist[-1].split(",")[0]), "steps": int(hist[-1].split(",")[1]),
                         "wall_s": round(time.time() - t0, 1),
                         "model": _get(cfg, "name"), "encoder": _get(cfg, "encoder"), "lr": _get(cfg, "lr"),
                         "batch": _get(cfg, "batch_size"), "size": m.get("hardware")})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{a.data}, {a.minutes:g} min each, {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores")
    print(f"| candidate | model | lr | batch | epochs | steps | val mIoU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['candidate']} | failed: {r['error']} | | | | | |")
        else:
            print(f"| {r['candidate']} | {r['model']}/{r['encoder']} | {r['lr']} | {r['batch']} | {r['epochs']:g} | "
                  f"{r['steps']} | {r['mIoU']:.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


def _get(yaml_text: str, key: str) -> str:
    for line in yaml_text.splitlines():
        if line.strip().startswith(f"{key}:"):
            return line.split(":", 1)[1].strip()
    return ""


if __name__ == "__main__":
    main()
