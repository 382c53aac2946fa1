"""Finding what to fix and what to add: `audit` (masks a model confidently disagrees with) and `suggest`
(unlabelled images worth labelling next)."""
from __future__ import annotations

from pathlib import Path

from pixelseg.cli.common import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, check_out_folder, console
from pixelseg.errors import PixelsegError

SUGGEST_KINDS = ("entropy", "balanced", "low_confidence", "margin")    # suggest.KINDS, without its imports


def add_parsers(sub) -> None:
    a = sub.add_parser("audit", help="rank images (and regions) whose masks the model confidently disagrees with: "
                                     "swapped classes, missing objects, shifted or wrong masks")
    a.add_argument("run", help="run folder (its config trains the fold models)")
    a.add_argument("--data", help="dataset root (default: the one the run was trained on)")
    a.add_argument("--split", default="train", help="split whose masks to audit (default %(default)s)")
    a.add_argument("--folds", type=NON_NEGATIVE_INT, default=None,
                   help="train this many fold models so every image is judged by a model that never saw it; 0 = use "
                        "the run as is (default: 3 for the train split, 0 for others)")
    a.add_argument("--fold-minutes", type=POSITIVE, default=3.0, help="training budget of each fold model (default %(default)s)")
    a.add_argument("--threshold", type=POSITIVE, default=0.7,
                   help="model probability above which a disagreeing pixel counts (default %(default)s)")
    a.add_argument("--gallery", type=NON_NEGATIVE_INT, default=24, help="images shown in the HTML (default %(default)s)")
    a.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="fold assignment seed (default %(default)s)")
    a.add_argument("--out", help="folder for audit.json and audit.html (default RUN/audit)")
    a.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    a.add_argument("--labelme", type=POSITIVE_INT, metavar="N", help="also write the N most suspicious images with "
                   "their current masks as LabelMe files to OUT/labelme, to correct in LabelMe and bring back with "
                   "`pixelseg data import OUT/labelme --into DATASET`")
    a.set_defaults(handler=cmd_audit)

    s = sub.add_parser("suggest", help="rank unlabelled images by how much labelling them should help "
                                       "(uncertain, and not alike)")
    s.add_argument("run", help="run folder, or hf://user/name")
    s.add_argument("unlabeled", nargs="+", metavar="UNLABELED", help="folders or files of unlabelled images")
    s.add_argument("--n", type=POSITIVE_INT, default=10, help="how many images to suggest (default %(default)s)")
    s.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="tie-break seed (default %(default)s)")
    s.add_argument("--kind", default="entropy", choices=SUGGEST_KINDS,
                   help="uncertainty score of an image; balanced weighs uncertainty on classes the run's training "
                        "labels held little of higher (default %(default)s)")
    s.add_argument("--gallery", type=NON_NEGATIVE_INT, default=24, help="images shown in the HTML (default %(default)s)")
    s.add_argument("--out", help="folder for suggest.json, suggest.txt and suggest.html (default RUN/suggest)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    s.add_argument("--labelme", action="store_true", help="also write the picked images with the model's labels as "
                   "LabelMe pre-labels to OUT/labelme, to correct in LabelMe and add with `pixelseg data import "
                   "OUT/labelme --into DATASET`")
    s.set_defaults(handler=cmd_suggest)


def _run_folder(path: str) -> None:
    from pixelseg.run.folder import RunFolder
    RunFolder(path).info()          # a missing folder or a non-run: one line, before any work


def cmd_audit(a) -> int:
    from rich.table import Table

    from pixelseg.quality.audit import AuditSettings, audit_run
    _run_folder(a.run)
    if a.data is not None and not Path(a.data).is_dir():
        raise PixelsegError(f"--data {a.data}: dataset folder not found; give the folder that holds the images and masks")
    out = check_out_folder(a.out) if a.out else None
    if a.threshold >= 1:
        raise PixelsegError(f"--threshold {a.threshold}: a probability below 1 (e.g. 0.7)")
    res = audit_run(a.run, a.data, a.split, a.folds, out, device=a.device, fold_minutes=a.fold_minutes, seed=a.seed,
                    gallery=a.gallery, settings=AuditSettings(threshold=a.threshold), labelme=a.labelme)
    t = Table(title=f"most suspicious masks of {res['split']} ({len(res['images'])} images)")
    for col in ("rank", "image", "kind", "score", "regions"):
        t.add_column(col, justify="right" if col in ("rank", "score", "regions") else "left")
    for e in res["images"][:15]:
        t.add_row(str(e["rank"]), e["stem"], e["kind"], f"{e['score']:.4f}", str(len(e["regions"])))
    console().print(t)
    print(f"json: {res['json']}\nhtml: {res['html']}")
    if res.get("labelme"):
        print(f"labelme: {res['labelme']} (correct there, then `pixelseg data import {res['labelme']} --into "
              f"{res['data']}`)")
    return 0


def cmd_suggest(a) -> int:
    from pixelseg.quality.suggest import suggest
    _run_folder(a.run)
    for u in a.unlabeled:
        if not Path(u).exists():
            raise PixelsegError(f"{u}: not found; give folders or files of unlabelled images")
    out = check_out_folder(a.out) if a.out else None
    res = suggest(a.run, a.unlabeled, a.n, a.seed, out, kind=a.kind, device=a.device, gallery=a.gallery,
                  labelme=a.labelme)
    for e in res["picked"]:
        print(f"{e['rank']:>4}  {e['score']:.4f}  {e['image']}")
    print(f"json: {res['json']}\ntxt:  {res['txt']}\nhtml: {res['html']}")
    if res.get("labelme"):
        print(f"labelme: {res['labelme']} (pre-labels to correct, then `pixelseg data import {res['labelme']} "
              "--into DATASET`)")
    return 0
