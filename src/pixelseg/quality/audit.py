"""Label-error audit: where a model confidently disagrees with the masks it is shown.

An image's masks are compared with a model's class probabilities. A pixel is in *confident disagreement*
when the model's most likely class differs from the mask's, with probability above ``threshold``; its
weight is the margin p(model class) - p(mask class), so a pixel the model half believes counts little.
Connected regions of such pixels (8-connectivity, at least ``min_region`` of the image) are the findings:
region score = summed margin / image pixels (area x confidence, as a share of the image); the image score
is the sum over its regions, plus the agreement a re-aligned mask would gain when the mask is shifted.

Kinds, from the class conventions (class ``background``, 0 unless told, is the unlabelled stuff):
    swap         mask says one foreground class, the model confidently another, over the region
    missing      mask says background where the model sees a foreground object
    extra        mask says foreground where the model sees background
    shifted      moving the mask a few pixels raises its agreement (Cohen's kappa) with the model a lot
    wrong_image  the mask agrees with the model no better than chance at any shift (kappa near 0)
An image's kind is shifted / wrong_image when the whole-image tests say so, else its largest region's.

The model must not have memorised the labels it judges: audit_run trains K fold models with the run's own
config on the other folds (a folder-format view of symlinks in a temporary folder) and scores each image
with the one that never saw it; folds=0 uses the run itself (right for a split it was not trained on).
"""
from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import math
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from pixelseg.errors import PixelsegError

__all__ = ["AuditSettings", "Finding", "score_image", "shift_test", "rank_findings", "audit_samples",
           "write_audit", "audit_run", "write_view", "fold_of"]

KINDS = ("swap", "missing", "extra", "shifted", "wrong_image")


@dataclass(frozen=True)
class AuditSettings:
    threshold: float = 0.7          # model probability above which a disagreeing pixel counts
    min_region: float = 0.002       # smallest region, as a share of the image's pixels
    max_shift: float = 0.1          # largest mask offset tried, as a share of the short side
    shift_side: int = 96            # the shift test runs on label maps scaled to this long side (speed)
    shift_gain: float = 0.15        # kappa gain of the best offset that makes an image "shifted"
    shift_kappa: float = 0.5        # ... and the kappa it must reach there
    wrong_kappa: float = 0.35       # below this kappa at every offset: "wrong_image" (one-class masks excepted)
    background: int = 0


@dataclass
class Finding:
    """One audited image: what the JSON lists (see to_dict), best first by score."""
    image: str
    mask: str
    stem: str
    score: float
    kind: str
    regions: list[dict]
    kappa: float | None
    shift: list[int] | None
    shift_kappa: float | None
    fold: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _check(probs: np.ndarray, mask: np.ndarray) -> None:
    if probs.ndim != 3 or mask.ndim != 2 or tuple(probs.shape[1:]) != tuple(mask.shape):
        raise PixelsegError(f"probabilities {tuple(probs.shape)} do not match the mask {tuple(mask.shape)} (K x H x W, H x W)")


def disagreement(probs: np.ndarray, mask: np.ndarray, ignore_index: int, threshold: float):
    """(weight, pred, conf): per-pixel margin of confident disagreement (0 elsewhere), argmax, max prob."""
    _check(probs, mask)
    k = probs.shape[0]
    pred = probs.argmax(0)
    conf = probs.max(0)
    labelled = (mask != ignore_index) & (mask < k)
    m = np.where(labelled, mask, 0).astype(np.intp)
    p_mask = np.take_along_axis(probs, m[None], 0)[0]
    hit = labelled & (pred != m) & (conf > threshold)
    return np.where(hit, conf - p_mask, 0.0).astype(np.float32), pred.astype(np.int32), conf


def _region_kind(mask_cls: int, model_cls: int, background: int) -> str:
    if mask_cls == background:
        return "missing"
    return "extra" if model_cls == background else "swap"


def regions(weight: np.ndarray, pred: np.ndarray, mask: np.ndarray, min_region: float, background: int = 0) -> list[dict]:
    """Connected regions of confident disagreement, largest score first: box [x0, y0, x1, y1) in pixels,
    area, mean confidence margin, score (share of the image), majority mask and model class, kind."""
    h, w = weight.shape
    n, lab, stats, _ = cv2.connectedComponentsWithStats((weight > 0).astype(np.uint8), connectivity=8)
    min_area = max(1, math.ceil(min_region * h * w))
    out = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        sel = lab[y:y + bh, x:x + bw] == i
        wsum = float(weight[y:y + bh, x:x + bw][sel].sum())
        mask_cls = int(np.bincount(mask[y:y + bh, x:x + bw][sel].astype(np.int64)).argmax())
        model_cls = int(np.bincount(pred[y:y + bh, x:x + bw][sel].astype(np.int64)).argmax())
        out.append({"box": [x, y, x + bw, y + bh], "area": area, "confidence": round(wsum / area, 4),
                    "score": wsum / (h * w), "mask_class": mask_cls, "model_class": model_cls,
                    "kind": _region_kind(mask_cls, model_cls, background)})
    out.sort(key=lambda r: -r["score"])
    return out


def _kappa(cm: np.ndarray) -> float:
    """Cohen's kappa of a confusion matrix: agreement beyond chance (0 = chance, 1 = identical); one class
    filling both maps counts as full agreement."""
    total = cm.sum()
    if total == 0:
        return math.nan
    po = np.trace(cm) / total
    pe = float(cm.sum(0) @ cm.sum(1)) / total ** 2
    return 1.0 if pe >= 1.0 else float((po - pe) / (1.0 - pe))


def image_kappa(pred: np.ndarray, mask: np.ndarray, keep: np.ndarray, k: int) -> float:
    sel = keep & (mask < k)
    cm = np.bincount(pred[sel].astype(np.int64) * k + mask[sel].astype(np.int64), minlength=k * k)
    return _kappa(cm.reshape(k, k))


def _shrink(a: np.ndarray, side: int) -> np.ndarray:
    h, w = a.shape
    s = side / max(h, w)
    if s >= 1:
        return a
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_NEAREST)


def shift_test(pred: np.ndarray, conf: np.ndarray, mask: np.ndarray, k: int, ignore_index: int,
               settings: AuditSettings = AuditSettings()) -> tuple[float, list[int], float]:
    """(kappa at no offset, best offset [dy, dx] in original pixels, kappa there), over the pixels the
    model is sure of. The mask is moved, not the prediction: offset o means mask[y - dy, x - dx] fits."""
    p = _shrink(pred.astype(np.int32), settings.shift_side)
    c = _shrink(conf.astype(np.float32), settings.shift_side)
    m = _shrink(mask.astype(np.int32), settings.shift_side)
    scale = pred.shape[0] / p.shape[0]
    h, w = m.shape
    r = max(1, round(settings.max_shift * min(h, w)))
    sure = c > settings.threshold
    labelled = m != ignore_index
    best, k0 = (-math.inf, 0, 0), math.nan
    # nearest offsets first and only a strictly better kappa moves on: noise never calls a mask shifted
    for dy, dx in sorted(itertools.product(range(-r, r + 1), repeat=2), key=lambda d: abs(d[0]) + abs(d[1])):
        # the overlap of the mask moved by (dy, dx) with the prediction
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        kap = image_kappa(p[yd, xd], m[ys, xs], sure[yd, xd] & labelled[ys, xs], k)
        if (dy, dx) == (0, 0):
            k0 = kap
        if kap > best[0] + 1e-9:
            best = (kap, dy, dx)
    if math.isinf(best[0]):
        return math.nan, [0, 0], math.nan
    return k0, [round(best[1] * scale), round(best[2] * scale)], best[0]


def score_image(probs: np.ndarray, mask: np.ndarray, ignore_index: int = 255,
                settings: AuditSettings = AuditSettings()) -> dict:
    """Score one image: {"score", "kind", "regions", "kappa", "shift", "shift_kappa", "weight", "pred"}
    (weight and pred: the H x W maps behind it, for the gallery)."""
    probs = np.asarray(probs, dtype=np.float32)
    mask = np.asarray(mask)
    weight, pred, conf = disagreement(probs, mask, ignore_index, settings.threshold)
    found = regions(weight, pred, mask, settings.min_region, settings.background)
    k = probs.shape[0]
    kappa0, offset, kappa_best = shift_test(pred, conf, mask, k, ignore_index, settings)
    score = float(sum(r["score"] for r in found))
    kind = found[0]["kind"] if found else "none"
    shifted = (offset != [0, 0] and kappa_best >= settings.shift_kappa
               and kappa_best - (kappa0 if not math.isnan(kappa0) else 0.0) >= settings.shift_gain)
    if shifted:
        kind = "shifted"
        # what re-aligning would fix: the lost agreement, on top of the regions it explains
        score += float(kappa_best - kappa0) * 0.5
    elif found and kappa_best < settings.wrong_kappa and len(np.unique(mask[mask != ignore_index])) > 1:
        # a mask of one class (an erased only object) has kappa 0 by construction: that is "missing", not
        # another image's mask
        kind = "wrong_image"
        score += float(settings.wrong_kappa - kappa_best)
    return {"score": score, "kind": kind, "regions": found, "kappa": _num(kappa0),
            "shift": offset if shifted else None, "shift_kappa": _num(kappa_best), "weight": weight, "pred": pred}


def _num(v: float) -> float | None:
    return None if math.isnan(v) else round(float(v), 4)


def rank_findings(findings: list[Finding]) -> list[Finding]:
    """Best first; equal scores by stem so that the order never depends on the fold order."""
    return sorted(findings, key=lambda f: (-f.score, f.stem))


class TopImages:
    """The ``n`` highest-scoring images' maps for the gallery, without keeping every image's maps."""

    def __init__(self, n: int):
        self.n, self.heap, self.count = n, [], 0

    def offer(self, score: float, stem: str, make) -> None:
        """``make()`` builds the payload, called only when the image enters the top n."""
        if self.n <= 0:
            return
        self.count += 1
        full = len(self.heap) >= self.n
        if full and (score, stem) <= self.heap[0][:2]:
            return
        item = (score, stem, self.count, make())
        (heapq.heapreplace if full else heapq.heappush)(self.heap, item)

    def best_first(self) -> list:
        return [(s, stem, p) for s, stem, _, p in sorted(self.heap, key=lambda t: (-t[0], t[1]))]



# ------------------------------------------------------------------------------------- the audit of a run

def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold number of each of n images: a seeded shuffle dealt round-robin, so the folds differ by <= 1."""
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, np.int64)
    out[order] = np.arange(n) % folds
    return out


def _link(src, dst) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(Path(src).resolve())


def write_view(root: Path, index, train: list, val: list) -> Path:
    """A folder-format dataset at ``root`` holding ``train`` and ``val`` samples: images symlinked, masks
    symlinked when they hold class indices, else decoded once and written as index PNGs."""
    from pixelseg.data.labels import load_mask
    from pixelseg.fileio import write_json

    write_json(root / "classes.json", index.classes.to_dict())
    for split, samples in (("train", train), ("val", val)):
        for i, s in enumerate(samples):
            name = f"{i:06d}_{s.stem}"           # stems may repeat across the splits merged here
            _link(s.image, root / split / "images" / f"{name}{Path(s.image).suffix.lower()}")
            if s.decode is None and index.mask_color_channel is None:
                _link(s.mask, root / split / "masks" / f"{name}{Path(s.mask).suffix.lower()}")
            else:
                m = load_mask(s, index.mask_color_channel)
                (root / split / "masks").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / split / "masks" / f"{name}.png"), m.astype(np.uint16 if m.max() > 255 else np.uint8))
    return root


def _fold_line(k: int, folds: int, fold_metrics: dict | None, run_metrics: dict | None) -> str:
    """The fold's val mIoU; when it is well below the run's (or unknown), the warning that a model that learned
    little is unsure everywhere and flags nothing, so few findings would not mean clean masks."""
    mine, theirs = (fold_metrics or {}).get("mIoU"), (run_metrics or {}).get("mIoU")
    line = f"fold {k + 1}/{folds}: val mIoU " + ("unknown" if mine is None else f"{mine:.3f}")
    if theirs is not None:
        line += f" (the run's: {theirs:.3f})"
    if mine is None or (theirs is not None and mine < 0.8 * theirs):
        line += "; a weak fold model finds few errors: raise --fold-minutes"
    return line


def train_fold_models(run, index, split: str, folds: int, minutes: float, epochs: int | None, seed: int,
                      work: Path, log=print) -> tuple[list[Path], np.ndarray]:
    """K runs, run k trained (run's config, ``minutes`` each) on every labelled training image outside fold
    k of ``split``; validated on the val split when the audited split is another one, else on fold k."""
    from pixelseg.config import make_config
    from pixelseg.engine.trainer import train
    from pixelseg.run.folder import RunFolder

    audited = index.split(split)
    others = [s for s in index.splits.get("train", []) if split != "train" and s.mask is not None]
    val = [s for s in index.splits.get("val", []) if s.mask is not None] if split != "val" else []
    fold = fold_of(len(audited), folds, seed)
    runs = []
    for k in range(folds):
        held = [s for s, f in zip(audited, fold) if f == k]
        rest = others + [s for s, f in zip(audited, fold) if f != k]
        root = write_view(work / f"data{k}", index, rest, val or held)
        out = work / f"fold{k}"
        log(f"fold {k + 1}/{folds}: training on {len(rest)} images, {minutes:g} min, to audit {len(held)}")
        runs.append(train(make_config(RunFolder(run).config_path, data=str(root), out=str(out), format="folder",
                                      max_minutes=minutes, epochs=epochs), quiet=True))
        log(_fold_line(k, folds, RunFolder(runs[-1]).metrics(), RunFolder(run).metrics()))
    return runs, fold


def audit_samples(samples: list, index, probs_of, settings: AuditSettings = AuditSettings(),
                  top: TopImages | None = None, fold: int | None = None) -> list[Finding]:
    """Score every sample's mask against ``probs_of(sample)`` (K x H x W class probabilities: a model's, or
    any source's); the gallery's maps of the best go to ``top``."""
    from pixelseg.reports.audit_page import payload
    from pixelseg.data.labels import load_mask

    findings = []
    for s in samples:
        mask = load_mask(s, index.mask_color_channel)
        probs = np.asarray(probs_of(s), dtype=np.float32)
        if probs.shape[1:] != mask.shape:
            probs = np.stack([cv2.resize(p, (mask.shape[1], mask.shape[0])) for p in probs])
        res = score_image(probs, mask, index.classes.ignore_index, settings)
        f = Finding(str(s.image), str(s.mask), s.stem, res["score"], res["kind"], res["regions"],
                    res["kappa"], res["shift"], res["shift_kappa"], fold)
        findings.append(f)
        if top is not None:
            top.offer(f.score, f.stem, functools.partial(payload, s.image, mask, res))
    return findings


def write_audit(out, findings: list[Finding], top: TopImages, classes, **meta) -> dict:
    """OUT/audit.json (``meta`` + the ranked images) and OUT/audit.html; returns the JSON's content plus
    the two paths."""
    from pixelseg.reports.audit_page import audit_page
    from pixelseg.fileio import write_json

    out = Path(out)
    result = {**meta, "classes": list(classes.names),
              "images": [dict(rank=i + 1, **f.to_dict()) for i, f in enumerate(rank_findings(findings))]}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "audit.json", result)
    audit_page(out / "audit.html", result, top.best_first(), classes)
    return {**result, "json": str(out / "audit.json"), "html": str(out / "audit.html")}


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt (as Ctrl-C does) while the audit runs, so the fold models' temporary
    folder is removed and nothing is written: by default SIGTERM ended the process between fold trainings
    with the folds left in $TMPDIR (issue 27). Fold training sets its own handler (engine/guards.StopFlag) and
    ends with KeyboardInterrupt too."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        old = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:          # not the main thread: no signal handling
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def audit_run(run, data=None, split: str = "train", folds: int | None = None, out=None, *, device: str = "auto",
              fold_minutes: float = 3.0, fold_epochs: int | None = None, seed: int = 0, gallery: int = 24,
              settings: AuditSettings = AuditSettings(), log=print, labelme: int | None = None) -> dict:
    """Audit the masks of ``split``; write OUT/audit.json and OUT/audit.html (default OUT = RUN/audit).
    folds: None = 3 for the train split, 0 otherwise. labelme=N: also OUT/labelme, the N most suspicious images
    with their current masks as LabelMe files (to correct and import back). Returns the JSON's content."""
    import tempfile

    from pixelseg.inference.predictor import Predictor
    from pixelseg.measure.opener import open_split
    from pixelseg.run.folder import RunFolder

    folder = RunFolder(run)
    labelled = open_split(run, data, split, verb="audit")
    index, samples = labelled.index, labelled.samples
    out = folder.audit_dir if out is None else Path(out)
    if labelme:
        from pixelseg.data.tools.labelling import check_export_folder
        check_export_folder(out / "labelme")      # before the fold models train: it may hold someone's corrections
    folds = (3 if split == "train" else 0) if folds is None else int(folds)
    if folds and len(samples) < 2:
        raise PixelsegError(f"--folds {folds}: the {split} split has {len(samples)} image(s), too few to hold out "
                            f"(fold models need 2 or more); give --folds 0 to audit with the run as is")
    if folds == 1 or folds > len(samples):
        raise PixelsegError(f"--folds {folds}: give 0 (use the run as is) or 2..{len(samples)}")
    top, findings = TopImages(gallery), []
    with _sigterm_interrupts(), tempfile.TemporaryDirectory(prefix="pixelseg-audit-") as tmp:
        if folds:
            runs, fold = train_fold_models(run, index, split, folds, fold_minutes, fold_epochs, seed, Path(tmp), log)
        else:
            runs, fold = [folder.path], np.zeros(len(samples), np.int64)
        for k, r in enumerate(runs):
            predictor = Predictor(r, device)
            findings += audit_samples([s for s, f in zip(samples, fold) if f == k], index,
                                      lambda s: predictor.probs([s.image])[0], settings, top, k if folds else None)
    result = write_audit(out, findings, top, index.classes, run=str(folder.path), data=str(index.root), split=split,
                         folds=folds, fold_minutes=fold_minutes if folds else None, settings=asdict(settings))
    if labelme:
        from pixelseg.data.tools.labelling import export_labelme
        from pixelseg.data.labels import load_mask
        by_stem = {s.stem: s for s in samples}
        worst = [by_stem[e["stem"]] for e in result["images"][:labelme]]
        export_labelme([(s.image, load_mask(s, index.mask_color_channel)) for s in worst], index.classes,
                       out / "labelme")
        result["labelme"] = str(out / "labelme")
    return result
