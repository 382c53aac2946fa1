"""Active-learning benchmark: label K images picked by `pixelseg suggest` vs K random ones, round by round.

    python benchmarks/active.py [--work DIR] [--pool 400] [--val 100] [--size 64] [--seed-set 20] [--k 20]
                                [--rounds 2] [--minutes 1] [--model NAME] [--kinds entropy,balanced]
                                [--rare CLASS --rare-share 0.08] [--frames 8] [--empty-share 0.5]

A synthetic pool (`pixelseg data synth`) stands for the unlabelled images (their masks are read only once
picked). By default every class is as common as every other, in the pool as in val. With --rare, one class
is made rare in the pool only, as in most real pools (riders and trains in driving frames, a lesion type in
scans): only --rare-share of the pool's images show it, against about half in val, which scores every class
alike. With --frames N the pool holds pool / N scenes, each in N frames a few pixels apart, as consecutive
frames of a video are: labelling two frames of one scene teaches little more than one. With --empty-share S,
that share of the pool's images, and of val's, show no object at all, as most images do in many real pools
(image tiles without ships or buildings, scan slices without a lesion, parts without a defect): a label
spent on one of them teaches only what background looks like.

All arms start from the same seed set and its run. Each round, an arm named by --kinds adds the K images
`suggest --kind` ranks first (uncertainty + diversity, from the arm's latest run; arm "foreground": the K
in which that run predicts the most object pixels), arm "random" K drawn at
random from its own unlabelled rest; each arm then trains a new run from scratch on its labels with the
same budget (--minutes, the recipe's choices otherwise) and is scored on the val split. Printed: val mIoU
per round and arm, with the number of labelled images. Trainings stop at a wall-clock budget, so a loaded
machine gives fewer steps (and noisier numbers) than an idle one: compare arms within one run of this script.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pixelseg  # noqa: E402
from pixelseg.quality.audit import write_view  # noqa: E402
from pixelseg.data.formats import open_dataset  # noqa: E402
from pixelseg.data.labels import load_mask  # noqa: E402
from pixelseg.data.tools.synth import generate  # noqa: E402
from pixelseg.run.folder import RunFolder  # noqa: E402
from pixelseg.quality.suggest import suggest  # noqa: E402


def train_on(index, labelled: list, val: list, out: Path, a) -> tuple[Path, float]:
    view = write_view(out.with_name(out.name + "-data"), index, labelled, val)
    run = pixelseg.train(view, a.model, out=str(out), format="folder", max_minutes=a.minutes, epochs=a.epochs,
                         image_size=(a.size, a.size), seed=a.seed, quiet=True)
    return run, float(RunFolder(run).metrics()["mIoU"])


def shows(sample, c: int) -> bool:
    """Whether the sample's mask holds class ``c``."""
    return bool((load_mask(sample, None) == c).any())


def most_foreground(run, paths: list[str], k: int) -> list[int]:
    """Indices of the ``k`` images in which the run predicts the most non-background pixels: the plain rule
    that the uncertainty arms are checked against on pools with empty images (arm "foreground")."""
    from pixelseg.data.io import read_image
    from pixelseg.inference.predictor import Predictor
    predictor = Predictor(run, "cpu")
    share = []
    for i in range(0, len(paths), 64):
        images = [read_image(p, predictor.info.preprocessing.in_channels) for p in paths[i:i + 64]]
        share += [float((logits.argmax(0) > 0).float().mean()) for logits in predictor.predict_logits(images)]
    return [int(i) for i in np.argsort(-np.asarray(share), kind="stable")[:k]]


def make_pool(work: Path, a):
    """(index, pool samples, val samples). With --rare: drawn from 4x as many scenes, so that --rare-share of
    the pool shows the rare class and the rest does not. With --frames N: pool / N scenes, each seen in N
    frames (shifted a few pixels, lit a little differently), as consecutive video frames are. With
    --empty-share S: that share of the pool's scenes and of val are drawn with no object."""
    scenes = a.pool // a.frames
    empty, empty_val = round(a.empty_share * scenes), round(a.empty_share * a.val)
    scenes -= empty                                              # the scenes that hold objects
    generate(work / "raw", 4 * scenes if a.rare else scenes, a.val - empty_val, (a.size, a.size), seed=a.seed)
    raw = open_dataset(work / "raw", "folder")
    chosen, val = raw.split("train"), raw.split("val")
    if a.rare:
        if a.rare not in raw.classes.names:
            raise SystemExit(f"--rare {a.rare}: not a class; choose one of {', '.join(raw.classes.names[1:])}")
        c = raw.classes.names.index(a.rare)
        has = [shows(s, c) for s in chosen]
        with_c = [s for s, x in zip(chosen, has) if x]
        without = [s for s, x in zip(chosen, has) if not x]
        n_rare = round(a.rare_share * scenes)
        if len(with_c) < n_rare or len(without) < scenes - n_rare:
            raise SystemExit(f"--rare-share {a.rare_share}: not enough scenes with/without {a.rare}; try another share")
        order = np.random.default_rng(a.seed + 1000)
        chosen = [with_c[i] for i in order.choice(len(with_c), n_rare, replace=False)]
        chosen += [without[i] for i in order.choice(len(without), scenes - n_rare, replace=False)]
        chosen = [chosen[i] for i in order.permutation(len(chosen))]
    if empty or empty_val:
        generate(work / "empty", empty, empty_val, (a.size, a.size), seed=a.seed + 3000, min_objects=0, max_objects=0)
        blank = open_dataset(work / "empty", "folder")
        order = np.random.default_rng(a.seed + 3000)
        chosen, val = chosen + blank.split("train"), val + blank.split("val")
        chosen = [chosen[i] for i in order.permutation(len(chosen))]
    index = open_dataset(write_view(work / "data", raw, chosen, val), "folder")
    if a.frames > 1:
        index = open_dataset(write_frames(work / "frames", index, a.frames, a.seed), "folder")
    if a.rare:
        c = index.classes.names.index(a.rare)
        n_pool = sum(shows(s, c) for s in index.split("train"))
        share = np.mean([shows(s, c) for s in index.split("val")])
        print(f"pool: {len(index.split('train'))} images, {n_pool} show {a.rare}; val: {a.val} images, "
              f"{100 * share:.0f} % show it", flush=True)
    return index, index.split("train"), index.split("val")


def write_frames(root: Path, index, frames: int, seed: int) -> Path:
    """Each train scene of ``index`` as ``frames`` images: shifted by up to 1/10 of its side and lit 0.9-1.1x,
    mask shifted alike; val as it is."""
    import shutil

    import cv2
    rng = np.random.default_rng(seed + 2000)
    shutil.copytree(index.root / "val", root / "val", dirs_exist_ok=True)
    shutil.copy(index.root / "classes.json", root / "classes.json")
    for sub in ("images", "masks"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(index.split("train")):
        img, mask = cv2.imread(str(s.image), cv2.IMREAD_COLOR), load_mask(s, None).astype(np.uint8)
        h, w = mask.shape
        for f in range(frames):
            dx, dy = rng.uniform(-0.1, 0.1, 2) * (w, h) if f else (0.0, 0.0)
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            shifted = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            lit = np.clip(shifted.astype(np.float32) * rng.uniform(0.9, 1.1), 0, 255).astype(np.uint8)
            label = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
            cv2.imwrite(str(root / "train" / "images" / f"s{i:04d}_f{f}.png"), lit)
            cv2.imwrite(str(root / "train" / "masks" / f"s{i:04d}_f{f}.png"), label)
    return root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="folder for the data and runs (default: a temporary one)")
    ap.add_argument("--pool", type=int, default=400)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed-set", type=int, default=20, help="images labelled before the first round")
    ap.add_argument("--k", type=int, default=20, help="images labelled per round and arm")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=1.0, help="training budget of every run")
    ap.add_argument("--epochs", type=int, default=None,
                    help="also cap every training at this many epochs (equal steps per arm on a loaded machine)")
    ap.add_argument("--model", default=None, help="model name (default: the recipe's choice)")
    ap.add_argument("--kinds", type=lambda v: v.split(","), default=["entropy"],
                    help="suggest's scores to compare with random, comma-separated (default entropy); "
                         "'foreground' adds the plain rule: the images the model sees most objects in")
    ap.add_argument("--rare", help="a class name to make rare in the pool (e.g. star)")
    ap.add_argument("--rare-share", type=float, default=0.08, help="share of the pool's images that show --rare")
    ap.add_argument("--frames", type=int, default=1,
                    help="each pool scene seen in this many frames (shifted, relit), as in video (default 1)")
    ap.add_argument("--empty-share", type=float, default=0.0,
                    help="share of the pool's images, and of val's, that show no object (default 0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="pixelseg-active-bench-"))
    t0 = time.time()
    index, pool, val = make_pool(work, a)
    rng = np.random.default_rng(a.seed)
    seed_ids = [int(i) for i in rng.choice(len(pool), a.seed_set, replace=False)]
    run, miou = train_on(index, [pool[i] for i in seed_ids], val, work / "seed", a)
    names = [*a.kinds, "random"]
    rows = [{"round": 0, "labelled": a.seed_set, **{name: miou for name in names}}]
    print(f"round 0: {a.seed_set} labelled, val mIoU {miou:.4f} ({time.time() - t0:.0f}s)", flush=True)
    arms = {name: {"ids": list(seed_ids), "run": run} for name in names}
    for r in range(1, a.rounds + 1):
        row = {"round": r, "labelled": a.seed_set + r * a.k}
        for name, arm in arms.items():
            labelled = set(arm["ids"])
            rest = [i for i in range(len(pool)) if i not in labelled]
            if name == "foreground":
                new = [rest[i] for i in most_foreground(arm["run"], [str(pool[i].image) for i in rest], a.k)]
            elif name != "random":
                res = suggest(arm["run"], [str(pool[i].image) for i in rest], a.k, a.seed,
                              work / f"suggest-{name}{r}", kind=name, gallery=4)
                by_path = {str(pool[i].image): i for i in rest}
                new = [by_path[e["image"]] for e in res["picked"]]
            else:
                new = [rest[int(i)] for i in rng.choice(len(rest), a.k, replace=False)]
            arm["ids"] += new
            arm["run"], row[name] = train_on(index, [pool[i] for i in arm["ids"]], val, work / f"{name}{r}", a)
        rows.append(row)
        print(f"round {r}: {row['labelled']} labelled, val mIoU "
              + " ".join(f"{name} {row[name]:.4f}" for name in names) + f" ({time.time() - t0:.0f}s)", flush=True)
    print("| round | labelled | " + " | ".join(f"{n} mIoU" for n in names) + " | "
          + " | ".join(f"{n} − random" for n in a.kinds) + " |")
    print("|---:|---:|" + "---:|" * (len(names) + len(a.kinds)))
    for row in rows:
        print(f"| {row['round']} | {row['labelled']} | " + " | ".join(f"{100 * row[n]:.1f}" for n in names) + " | "
              + " | ".join(f"{100 * (row[n] - row['random']):+.1f}" for n in a.kinds) + " |")
    print(f"total {time.time() - t0:.0f}s, {a.minutes:g} min per training")
    if a.rare:
        c = index.classes.names.index(a.rare)
        for name, arm in arms.items():
            shown = sum(shows(pool[i], c) for i in arm["ids"])
            iou = RunFolder(arm["run"]).metrics()["per_class"][a.rare]["iou"]
            print(f"{name}: {shown} of {len(arm['ids'])} labelled images show {a.rare}; its val IoU {iou:.3f}")
    if a.empty_share:
        for name, arm in arms.items():
            blank = sum(not (load_mask(pool[i], None) > 0).any() for i in arm["ids"])
            print(f"{name}: {blank} of {len(arm['ids'])} labelled images show no object")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
