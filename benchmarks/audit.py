"""Label-error audit benchmark: plant errors in a synthetic training set, train, audit, score the ranking.

    python benchmarks/audit.py [--work DIR] [--train 400] [--val 100] [--size 64] [--share 0.1]
                               [--minutes 2] [--folds 3] [--fold-minutes 3] [--model NAME]

A built-in synthetic set (`pixelseg data synth`) gets `share` of its training masks corrupted, in equal
parts swap / missing / shifted / wrong_image (testing.plant_error; shifts of `--offset` x the side), a run
is trained on the corrupted set (--minutes), and `pixelseg audit --folds K` ranks the training images
with K fold models (--fold-minutes each, the run's config). With k = the number corrupted:
    precision@k   corrupted images among the k top-ranked (overall), and per kind the share of that
                  kind's corrupted images found in the top k (recall@k)
    recall@2k     corrupted images found in the top 2k
    kind ok       among corrupted images found in the top 2k, the share whose suspected kind is right
Timings are wall-clock on whatever machine runs it; trainings stop at their budgets.

--oracle skips training: the "model" is the clean masks as probabilities (0.95 on the true class), so the
table measures the scoring and kind rules alone, the ceiling a well-trained model approaches.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pixelseg  # noqa: E402
from pixelseg.quality.audit import audit_run  # noqa: E402
from pixelseg.testing import plant_error  # noqa: E402
from pixelseg.data.tools.synth import generate  # noqa: E402

KINDS = ("swap", "missing", "shifted", "wrong_image")


def corrupt(root: Path, share: float, seed: int, offset: float) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Overwrite `share` of root/train/masks with planted errors; returns ({stem: kind}, clean masks)."""
    rng = np.random.default_rng(seed)
    masks = sorted((root / "train" / "masks").glob("*.png"))
    n_bad = int(round(share * len(masks)))
    picked = rng.choice(len(masks), n_bad, replace=False)
    originals = {p.stem: np.asarray(Image.open(p)) for p in masks}
    truth = {}
    for j, i in enumerate(picked):
        kind = KINDS[j % len(KINDS)]
        p = masks[i]
        other = originals[masks[(i + 1 + int(rng.integers(len(masks) - 1))) % len(masks)].stem]
        new = plant_error(originals[p.stem], kind, rng, 6, other=other, offset=offset)
        if new is None:          # no object big enough: shift it instead
            kind, new = "shifted", plant_error(originals[p.stem], "shifted", rng, 6, offset=offset)
        Image.fromarray(new.astype(np.uint8)).save(p)
        truth[p.stem] = kind
    return truth, originals


def oracle_audit(data: Path, clean: dict, out: Path) -> dict:
    from pixelseg.quality.audit import TopImages, audit_samples, write_audit
    from pixelseg.data.formats import open_dataset

    index = open_dataset(data, "folder")

    def probs(s):
        m = clean[s.stem]
        p = np.full((6, *m.shape), 0.01, np.float32)
        np.put_along_axis(p, m[None].astype(np.int64), 0.95, 0)
        return p
    top = TopImages(24)
    return write_audit(out, audit_samples(index.split("train"), index, probs, top=top), top, index.classes,
                       split="train", folds=0, data=str(data), model="oracle")


def score(ranking: list[dict], truth: dict[str, str]) -> dict:
    k = len(truth)
    stems = [e["stem"] for e in ranking]
    top_k, top_2k = set(stems[:k]), set(stems[:2 * k])
    kind_of = {e["stem"]: e["kind"] for e in ranking}
    rows = {"overall": {"n": k, "precision@k": len(top_k & truth.keys()) / k,
                        "recall@2k": len(top_2k & truth.keys()) / k}}
    found = [s for s in truth if s in top_2k]
    rows["overall"]["kind ok"] = (sum(kind_of[s] == truth[s] for s in found) / len(found)) if found else None
    for kind in KINDS:
        mine = {s for s, t in truth.items() if t == kind}
        if not mine:
            continue
        hit = [s for s in mine if s in top_2k]
        rows[kind] = {"n": len(mine), "recall@k": len(mine & top_k) / len(mine), "recall@2k": len(hit) / len(mine),
                      "kind ok": (sum(kind_of[s] == kind for s in hit) / len(hit)) if hit else None}
    return rows


def table(rows: dict) -> str:
    def f(v):
        return "—" if v is None else f"{v:.2f}"
    lines = ["| kind | n | precision@k | recall@k | recall@2k | kind ok |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['n']} | {f(r.get('precision@k'))} | {f(r.get('recall@k'))} | "
                     f"{f(r['recall@2k'])} | {f(r['kind ok'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="folder for the data, runs and audit (default: a temporary one)")
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--share", type=float, default=0.1)
    ap.add_argument("--offset", type=float, default=0.12, help="shift of a shifted mask, share of the side")
    ap.add_argument("--minutes", type=float, default=2.0, help="budget of the run that is audited")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--fold-minutes", type=float, default=3.0)
    ap.add_argument("--model", default=None, help="model name (default: the recipe's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--oracle", action="store_true", help="no training: score against the clean masks")
    a = ap.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="pixelseg-audit-bench-"))
    data = work / "data"
    t0 = time.time()
    generate(data, a.train, a.val, (a.size, a.size), seed=a.seed)
    truth, clean = corrupt(data, a.share, a.seed, a.offset)
    print(f"data: {data}, {len(truth)} of {a.train} training masks corrupted", flush=True)
    if a.oracle:
        res = oracle_audit(data, clean, work / "audit")
        print(table(score(res["images"], truth)))
        print(f"total {time.time() - t0:.0f}s (oracle model); audit in {res['html']}")
        return 0
    run = pixelseg.train(data, a.model, out=str(work / "run"), max_minutes=a.minutes, image_size=(a.size, a.size),
                         quiet=True, seed=a.seed)
    print(f"run: {run} ({time.time() - t0:.0f}s so far; val mIoU {pixelseg.run.folder.RunFolder(run).metrics().get('mIoU')})", flush=True)
    res = audit_run(run, data, "train", a.folds, work / "audit", fold_minutes=a.fold_minutes, seed=a.seed)
    rows = score(res["images"], truth)
    print(table(rows))
    print(f"total {time.time() - t0:.0f}s; audit in {res['html']}")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows, "truth": truth}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
