"""Does learning from the images nobody labelled pay? Supervised-only vs consistency training at the same budget.

    python benchmarks/semi.py --data DIR --keep 0.1 --minutes 8 --seeds 0 1 [--out WORK] [--json rows.json]

DIR is a folder-format dataset with masks for every training image (e.g. DigitScenes from ../shared/tuning).
A share `--keep` of its training images keeps its masks (chosen by a seeded hash of the name, the same for every
arm); the rest become a folder of unlabelled images, their masks hidden (kept aside to measure the pseudo-labels).
For each seed, one after another on this machine:
    supervised   pixelseg train --data LABELLED --max-minutes M --seed S --semi off
    semi         the same with --unlabelled UNLABELLED --semi on
then `pixelseg compare SUP SEMI --paired` (paired bootstrap over the val images), and, for the semi run, the
accuracy and coverage of its pseudo-labels on the hidden truth of up to 60 unlabelled images (pixels above the
run's final class thresholds). Prints one table with the CPU's name and the data's digest.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from pixelseg.run.folder import RunFolder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipes import ci_text, cpu_name, data_digest, train_candidate  # noqa: E402


def split_labels(data: Path, keep: float, out: Path) -> tuple[Path, Path, Path]:
    """OUT/labelled (the kept masks + the val split), OUT/unlabelled (images only), OUT/hidden (their masks)."""
    lab, unl, hid = out / "labelled", out / "unlabelled", out / "hidden"
    if lab.exists():
        return lab, unl, hid
    for d in (lab / "train" / "images", lab / "train" / "masks", unl, hid):
        d.mkdir(parents=True)
    shutil.copytree(data / "val", lab / "val")
    if (data / "classes.json").exists():
        shutil.copyfile(data / "classes.json", lab / "classes.json")
    for img in sorted((data / "train" / "images").iterdir()):
        mask = data / "train" / "masks" / f"{img.stem}.png"
        share = int(hashlib.sha1(img.stem.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        if share < keep:
            _link(img, lab / "train" / "images" / img.name)
            _link(mask, lab / "train" / "masks" / mask.name)
        else:
            _link(img, unl / img.name)
            _link(mask, hid / mask.name)
    return lab, unl, hid


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def pseudo_label_quality(run: Path, unl: Path, hid: Path, n: int = 60) -> dict:
    """Accuracy and coverage of the run's pseudo-labels (top class where its probability passes the class's final
    threshold) against the hidden masks."""
    from PIL import Image

    from pixelseg.inference.predictor import Predictor
    m = RunFolder(run).metrics()
    thr = m.get("unlabelled", {}).get("thresholds")
    if not thr:
        return {}
    p = Predictor(run, "cpu", backend="torch")
    t = np.array([thr[c] for c in p.classes.names])
    right = kept = total = 0
    for img in sorted(unl.iterdir())[:n]:
        probs = p.probs([img])[0]
        conf, label = probs.max(0), probs.argmax(0)
        truth = np.asarray(Image.open(hid / f"{img.stem}.png"))
        keep = (conf >= t[label]) & (truth != p.classes.ignore_index)
        right += int((label[keep] == truth[keep]).sum())
        kept += int(keep.sum())
        total += int((truth != p.classes.ignore_index).sum())
    return {"pseudo_accuracy": right / max(kept, 1), "pseudo_coverage": kept / max(total, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--keep", type=float, default=0.1, help="share of the training images that keep their masks")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="semi-work", help="work folder (the split is kept and reused)")
    ap.add_argument("--json", help="write the rows here too")
    a = ap.parse_args()
    out = Path(a.out) / f"keep{a.keep:g}"
    lab, unl, hid = split_labels(Path(a.data), a.keep, out)
    n_lab, n_unl = len(list((lab / "train" / "images").iterdir())), len(list(unl.iterdir()))
    rows = []
    for seed in a.seeds:
        runs = {}
        for arm, flags in (("supervised", f"--seed {seed} --semi off"),
                           ("semi", f"--seed {seed} --semi on --unlabelled {unl}")):
            runs[arm] = out / f"{arm}-s{seed}"
            shutil.rmtree(runs[arm], ignore_errors=True)
            row = train_candidate(str(lab), a.minutes, flags, runs[arm])
            row |= {"arm": arm, "seed": seed}
            if arm == "semi" and "error" not in row:
                row |= pseudo_label_quality(runs[arm], unl, hid)
                row["unlabelled"] = RunFolder(runs[arm]).metrics().get("unlabelled")
            rows.append(row)
            print(json.dumps(row), flush=True)
        cmp = out / f"compare-s{seed}.json"
        subprocess.run([sys.executable, "-m", "pixelseg.cli", "compare", str(runs["semi"]), str(runs["supervised"]),
                        "--paired", "--device", "cpu", "--json", str(cmp)], capture_output=True, text=True)
        if cmp.exists():
            c = json.loads(cmp.read_text())["mIoU"]
            rows[-1]["semi_minus_sup"] = c
            print(json.dumps({"seed": seed, "semi_minus_supervised": c}), flush=True)
    print(f"\n{a.data} (digest {data_digest(a.data)}): {n_lab} labelled + {n_unl} unlabelled training images "
          f"(keep {a.keep:g}), {a.minutes:g} min each, {cpu_name()}, {os.cpu_count()} cores, one run after another")
    print("| seed | arm | steps | val mIoU [95 % CI] | semi − supervised [95 % CI], P(semi better) | pseudo-labels: "
          "accuracy / coverage | unlabelled pixels used |")
    print("|---|---|---:|---|---|---|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['seed']} | {r['arm']} | failed: {r['error']} | | | | |")
            continue
        ci = ci_text(r)
        d = r.get("semi_minus_sup")
        diff = (f"{100 * d['difference']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], "
                f"{100 * d['prob_a_better']:.0f} %") if d else ""
        pq = (f"{r['pseudo_accuracy']:.3f} / {r['pseudo_coverage']:.3f}" if "pseudo_accuracy" in r else "")
        used = f"{r['unlabelled']['used_share']:.1%}" if r.get("unlabelled") else ""
        print(f"| {r['seed']} | {r['arm']} | {r['steps']} | {r['mIoU']:.3f}{ci} | {diff} | {pq} | {used} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
