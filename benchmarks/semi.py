"""Does learning from the images nobody labelled pay? Supervised-only vs consistency training vs self-training, at
the same wall-clock budget.

    python benchmarks/semi.py --data DIR --keep 0.1 --minutes 8 --seeds 0 1 [--arms supervised semi selftrain oracle]
                              [--out WORK] [--json rows.json]

DIR is a folder-format dataset with masks for every training image (e.g. DigitScenes from ../shared/tuning).
A share `--keep` of its training images keeps its masks (chosen by a seeded hash of the name, the same for every
arm); the rest become a folder of unlabelled images, their masks hidden (kept aside to measure the pseudo-labels).
For each seed, one after another on this machine:
    supervised   pixelseg train --data LABELLED --max-minutes M --seed S --semi off
    semi         the same with --unlabelled UNLABELLED --semi on
    selftrain    (ST++ family, one round) a teacher trained on LABELLED for half the budget pseudo-labels UNLABELLED
                 (top class where its probability is at least --confidence, else the ignore index), then a student
                 starts from the teacher (--init-from) on LABELLED + the pseudo-labelled images for what is left of
                 the budget (pseudo-labelling time included)
    oracle       the semi run, but its strong view learns the hidden masks instead of the teacher's pseudo-labels
                 (engine/semi.ORACLE_ENV): the most this scheme could gain at the same cost, were its pseudo-labels
                 perfect and complete
then `pixelseg compare SUP SEMI --paired` (paired bootstrap over the val images). The semi run measures its own
pseudo-labels against the hidden masks as it trains (PIXELSEG_SEMI_TRUTH, engine/semi.py; training is unchanged):
their accuracy and coverage over the whole run and window by window. Prints the tables with the CPU's name and
the data's digest.
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

from pixelseg.engine.semi import ORACLE_ENV, TRUTH_ENV
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


def pseudo_over_time(run: Path) -> list[dict]:
    """The pseudo-labels' accuracy and coverage (share of the unlabelled pixels that got one) against the hidden
    masks, window by window between history rows, as the run measured them (engine/semi.TRUTH_ENV)."""
    return [{"step": int(r["step"]), "accuracy": float(r["pseudo_accuracy"]), "coverage": float(r["pseudo_coverage"])}
            for r in RunFolder(run).history() if r.get("pseudo_accuracy")]


def self_train(lab: Path, unl: Path, hid: Path, minutes: float, seed: int, work: Path, confidence: float) -> dict:
    """The selftrain arm (see the module's docstring): returns the student's row, with the teacher's mIoU and the
    pseudo-labels' accuracy and coverage on the hidden masks."""
    import time

    from PIL import Image

    from pixelseg.inference.predictor import Predictor
    from pixelseg.viz.overlay import save_label_png

    t0 = time.time()
    teacher = work / "teacher"
    row_t = train_candidate(str(lab), minutes / 2, f"--seed {seed} --semi off", teacher)
    if "error" in row_t:
        return row_t
    union = work / "data"
    for d in ("images", "masks"):
        (union / "train" / d).mkdir(parents=True)
    shutil.copytree(lab / "val", union / "val")
    if (lab / "classes.json").exists():
        shutil.copyfile(lab / "classes.json", union / "classes.json")
    for img in (lab / "train" / "images").iterdir():
        _link(img, union / "train" / "images" / img.name)
        _link(lab / "train" / "masks" / f"{img.stem}.png", union / "train" / "masks" / f"{img.stem}.png")
    p = Predictor(teacher, "cpu", backend="torch")
    ignore = p.classes.ignore_index
    right = kept = total = 0
    images = sorted(unl.iterdir())
    for i in range(0, len(images), 16):
        chunk = images[i:i + 16]
        for img, probs in zip(chunk, p.probs(chunk)):
            conf, label = probs.max(0), probs.argmax(0).astype(np.uint8)
            label[conf < confidence] = ignore
            truth = np.asarray(Image.open(hid / f"{img.stem}.png"))
            keep = (label != ignore) & (truth != ignore)
            right += int((label[keep] == truth[keep]).sum())
            kept += int(keep.sum())
            total += int((truth != ignore).sum())
            _link(img, union / "train" / "images" / img.name)
            save_label_png(union / "train" / "masks" / f"{img.stem}.png", label, p.classes.colors, ignore)
    left = minutes - (time.time() - t0) / 60
    row = train_candidate(str(union), max(left, 0.05), f"--seed {seed} --semi off --init-from {teacher}",
                          work / "student")
    row |= {"teacher_mIoU": row_t["mIoU"], "pseudo_accuracy": right / max(kept, 1),
            "pseudo_coverage": kept / max(total, 1), "wall_s": round(time.time() - t0, 1)}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--keep", type=float, default=0.1, help="share of the training images that keep their masks")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["supervised", "semi", "selftrain"],
                    choices=["supervised", "semi", "selftrain", "oracle"])
    ap.add_argument("--confidence", type=float, default=0.9, help="selftrain: pseudo-label pixels at least this sure")
    ap.add_argument("--semi-flags", default="", help="semi: more train flags (e.g. '--semi-start 0.4 --semi-batch 4'; "
                    "one flag alone with '=': --semi-flags=--no-semi-soft)")
    ap.add_argument("--out", default="semi-work", help="work folder (the split is kept and reused)")
    ap.add_argument("--json", help="write the rows here too")
    a = ap.parse_args()
    out = Path(a.out) / f"keep{a.keep:g}"
    lab, unl, hid = split_labels(Path(a.data), a.keep, out)
    n_lab, n_unl = len(list((lab / "train" / "images").iterdir())), len(list(unl.iterdir()))
    rows = []
    for seed in a.seeds:
        runs = {}
        for arm in a.arms:
            runs[arm] = out / f"{arm}-s{seed}"
            shutil.rmtree(runs[arm], ignore_errors=True)
            if arm == "selftrain":
                row = self_train(lab, unl, hid, a.minutes, seed, runs[arm], a.confidence)
                runs[arm] = runs[arm] / "student"
            else:
                flags = f"--seed {seed} --semi off" if arm == "supervised" else \
                    f"--seed {seed} --semi on --unlabelled {unl} {a.semi_flags}"
                if arm in ("semi", "oracle"):    # the run measures its pseudo-labels against the hidden masks
                    os.environ[TRUTH_ENV] = str(hid.resolve())
                if arm == "oracle":              # ... and learns the masks themselves
                    os.environ[ORACLE_ENV] = "1"
                try:
                    row = train_candidate(str(lab), a.minutes, flags, runs[arm])
                finally:
                    os.environ.pop(TRUTH_ENV, None)
                    os.environ.pop(ORACLE_ENV, None)
            row |= {"arm": arm, "seed": seed}
            if arm == "semi" and "error" not in row:
                unl_summary = RunFolder(runs[arm]).metrics().get("unlabelled") or {}
                row |= {k: unl_summary[k] for k in ("pseudo_accuracy", "pseudo_coverage", "pseudo_class_precision",
                                                    "pseudo_class_recall") if k in unl_summary}
                row["unlabelled"] = unl_summary
                row["pseudo_over_time"] = pseudo_over_time(runs[arm])
            if arm != "supervised" and "supervised" in runs and "error" not in row:
                cmp = out / f"compare-{arm}-s{seed}.json"
                subprocess.run([sys.executable, "-m", "pixelseg.cli", "compare", str(runs[arm]),
                                str(runs["supervised"]), "--paired", "--device", "cpu", "--data", str(lab),
                                "--json", str(cmp)],
                               capture_output=True, text=True)
                if cmp.exists():
                    row["semi_minus_sup"] = json.loads(cmp.read_text())["mIoU"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{a.data} (digest {data_digest(a.data)}): {n_lab} labelled + {n_unl} unlabelled training images "
          f"(keep {a.keep:g}), {a.minutes:g} min each, {cpu_name()}, {os.cpu_count()} cores, one run after another"
          + (f"; semi with {a.semi_flags}" if a.semi_flags else ""))
    print("| seed | arm | steps | val mIoU [95 % CI] | arm − supervised [95 % CI], P(arm better) | pseudo-labels: "
          "accuracy / coverage | class means: precision / recall | unlabelled pixels used |")
    print("|---|---|---:|---|---|---|---|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['seed']} | {r['arm']} | failed: {r['error']} | | | | | |")
            continue
        ci = ci_text(r)
        d = r.get("semi_minus_sup")
        diff = (f"{100 * d['difference']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], "
                f"{100 * d['prob_a_better']:.0f} %") if d else ""
        pq = (f"{r['pseudo_accuracy']:.3f} / {r['pseudo_coverage']:.3f}" if "pseudo_accuracy" in r else "")
        pc = (f"{r['pseudo_class_precision']:.3f} / {r['pseudo_class_recall']:.3f}"
              if r.get("pseudo_class_precision") is not None and r.get("pseudo_class_recall") is not None else "")
        used = f"{r['unlabelled']['used_share']:.1%}" if r.get("unlabelled") else ""
        print(f"| {r['seed']} | {r['arm']} | {r['steps']} | {r['mIoU']:.3f}{ci} | {diff} | {pq} | {pc} | {used} |")
    timed = [r for r in rows if r.get("pseudo_over_time")]
    if timed:
        print("\nPseudo-labels over the run (accuracy / coverage against the hidden masks, window by window between "
              "history rows, from the step the unlabelled images joined):")
        print("| seed | first window | middle | last window |")
        print("|---|---|---|---|")
        for r in timed:
            pts = r["pseudo_over_time"]
            cells = [f"{p['accuracy']:.3f} / {p['coverage']:.3f} (to step {p['step']})"
                     for p in (pts[0], pts[len(pts) // 2], pts[-1])]
            print(f"| {r['seed']} | " + " | ".join(cells) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
