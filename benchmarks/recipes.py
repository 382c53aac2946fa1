"""Which training recipe learns most in a fixed wall-clock budget? Trains each candidate with
`pixelseg train` for the same number of minutes on one dataset, one after another on this machine,
and prints a table of the best validation mIoU each reached.

    python benchmarks/recipes.py --data DIR --minutes 3 [--candidates default "unet --lr 3e-3" ...]

"default" means `pixelseg train --data DIR --max-minutes M` with nothing else: the product's own choice.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from pixelseg.run.folder import RunFolder  # noqa: E402

DEFAULT_CANDIDATES = [
    "default",
    "--encoder-weights none",
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
            rows.append(train_candidate(a.data, a.minutes, cand, Path(tmp) / f"run{i}"))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{a.data} (data digest {data_digest(a.data)}), {a.minutes:g} min each, {cpu_name()}, "
          f"{__import__('os').cpu_count()} cores")
    print_table(rows)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


def train_candidate(data: str, minutes: float, cand: str, out: Path) -> dict:
    """`pixelseg train --data DATA --max-minutes M` plus the candidate's flags ("default": none), in a
    subprocess; the row holds what it chose, its steps and its val mIoU with the 95 % interval."""
    extra = [] if cand == "default" else shlex.split(cand)
    cmd = [sys.executable, "-m", "pixelseg.cli", "train", "--data", data, "--max-minutes", str(minutes),
           "--out", str(out), *extra]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"candidate": cand, "error": (p.stderr.strip().splitlines() or ["(no message)"])[-1]}
    folder = RunFolder(out)
    m = folder.metrics()
    cfg = folder.config_path.read_text()
    data_cfg = (yaml.safe_load(cfg) or {}).get("data") or {}
    size = "x".join(map(str, data_cfg.get("image_size") or [])) + (f" at scale {data_cfg['scale']:g}"
                                                                    if data_cfg.get("scale") else "")
    last = folder.history()[-1]
    recipe = folder.recipe()
    return {"candidate": cand, "mIoU": m["mIoU"], "mIoU_ci": m.get("mIoU_ci"), "pixel_accuracy": m["pixel_accuracy"],
            "epochs": float(last["epoch"]), "steps": int(last["step"]),
            "train_seconds": m.get("train_seconds"), "wall_s": round(time.time() - t0, 1),
            "model": _get(cfg, "name"), "encoder": _get(cfg, "encoder"), "weights": _get(cfg, "encoder_weights"),
            "lr": _get(cfg, "lr"), "batch": _get(cfg, "batch_size"), "size": size,
            "amp": _get(cfg, "amp"), "pretrained": (recipe.get("pretrained") or {}).get("weights")}


def ci_text(row: dict) -> str:
    """The " [low, high]" of a row's mIoU interval, or "" when it has none."""
    return f" [{row['mIoU_ci'][0]:.3f}, {row['mIoU_ci'][1]:.3f}]" if row.get("mIoU_ci") else ""


def print_table(rows: list[dict]) -> None:
    print("| candidate | model/encoder | weights | lr | batch | epochs | steps | val mIoU [95 % CI] |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['candidate']} | failed: {r['error']} | | | | | | |")
            continue
        ci = ci_text(r)
        print(f"| {r['candidate']} | {r['model']}/{r['encoder']} | {r['pretrained'] or 'random'} | {r['lr']} | "
              f"{r['batch']} | {r['epochs']:g} | {r['steps']} | {r['mIoU']:.3f}{ci} |")


def data_digest(root: str) -> str:
    """sha256 (16 hex) over every file's relative path and bytes: tells a change of data from a change of code."""
    h = hashlib.sha256()
    for f in sorted(Path(root).rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _get(yaml_text: str, key: str) -> str:
    for line in yaml_text.splitlines():
        if line.strip().startswith(f"{key}:"):
            return line.split(":", 1)[1].strip()
    return ""


if __name__ == "__main__":
    main()
