"""The defaults before vs after pretrained encoders, on data pixelseg did not make.

    python benchmarks/pretrained.py --data DIR [DIR ...] --minutes 8 [--arms after before bf16] [--json out.json]

For each dataset, one after another on this machine, `pixelseg train --data DIR --max-minutes M`:
    after   nothing else: today's defaults (ImageNet-pretrained EfficientNet-Lite0 from the installed package)
    before  --encoder-weights none: the defaults as they were before, from random weights (the recipe then
            picks what it picked before: LR-ASPP on a CPU)
    bf16    the default with --amp bf16: bf16 autocast training on this CPU, next to `after` in fp32
and prints val mIoU with its 95 % interval, steps, steps a minute, mIoU points a minute and the recipe chosen,
with the CPU's name and a digest of each dataset. Suggested sets (see benchmarks/photo_scenes.py and
../shared/tuning/README.md): DigitScenes 128², DigitScenes 1536² mosaics, PhotoScenes 192².
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipes import ci_text, cpu_name, data_digest, train_candidate  # noqa: E402

ARMS = {"after": "default", "before": "--encoder-weights none", "bf16": "--amp bf16"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--arms", nargs="+", default=["after", "before"], choices=sorted(ARMS))
    ap.add_argument("--json", help="write the rows here too")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for d, data in enumerate(a.data):
            digest = data_digest(data)
            for arm in a.arms:
                row = train_candidate(data, a.minutes, ARMS[arm], Path(tmp) / f"{d}-{arm}")
                row |= {"data": data, "digest": digest, "arm": arm}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{a.minutes:g} min each, {cpu_name()}, {os.cpu_count()} cores, one run after another")
    print("| data (digest) | arm | recipe | steps | steps/min | val mIoU [95 % CI] | mIoU points/min |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        name = f"{Path(r['data']).name} ({r['digest']})"
        if "error" in r:
            print(f"| {name} | {r['arm']} | failed: {r['error']} | | | | |")
            continue
        minutes = (r.get("train_seconds") or a.minutes * 60) / 60
        recipe = (f"{r['model']}/{r['encoder'] or '-'}, {r['pretrained'] or 'random init'}, {r['size']}, "
                  f"lr {r['lr']}, batch {r['batch']}, amp {r['amp']}")
        ci = ci_text(r)
        print(f"| {name} | {r['arm']} | {recipe} | {r['steps']} | {r['steps'] / minutes:.0f} | "
              f"{r['mIoU']:.3f}{ci} | {100 * r['mIoU'] / minutes:.1f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
