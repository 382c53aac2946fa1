"""What to label next: unlabelled images ranked by how much labelling them should help.

Each image gets an uncertainty score from the run's class probabilities (uncertainty.image_uncertainty_scores:
mean normalized entropy by default; kind "balanced" weighs each pixel's entropy by how little of its likely
classes the run's training labels held, uncertainty.balanced_entropy) and a cheap descriptor: the
probabilities and the image itself, each mean-pooled to a 4 x 4 grid (uncertainty.pooled_features).
select_diverse then picks, among the most uncertain, images that are also unlike the ones already picked,
so ten copies of one hard frame are not all suggested. Everything is computed in a fixed order and ties
are broken by ``seed``: the same run, folder and seed give the same list.

    OUT/suggest.json   {"run", "pool", "pool_size", "n", "seed", "kind", ["class_weights",]
                        "picked": [{"rank", "image", "score"}]}
    OUT/suggest.txt    the picked image paths, one a line, best first (for a labelling tool)
    OUT/suggest.html   image | uncertainty (uncertain regions boxed) | model, for the picked images
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pixelseg.errors import PixelsegError
from pixelseg.quality.ranking import (
    balanced_entropy,
    image_uncertainty_scores,
    pooled_features,
    rarity_weights,
    select_diverse,
)
from pixelseg.models.outputs import confidence_maps

__all__ = ["suggest", "uncertain_boxes", "KINDS"]

KINDS = ("entropy", "balanced", "low_confidence", "margin")

UNSURE = 0.5         # normalized entropy above which a pixel is drawn as an uncertain region
GRID = 4
BATCH = 16


def uncertain_boxes(entropy: np.ndarray, min_share: float = 0.002, limit: int = 8) -> list[list[int]]:
    """Boxes [x0, y0, x1, y1) of the largest connected regions with entropy above UNSURE."""
    n, _, stats, _ = cv2.connectedComponentsWithStats((entropy > UNSURE).astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, n) if stats[i, 4] >= min_share * entropy.size]
    keep.sort(key=lambda i: -stats[i, 4])
    return [[int(stats[i, 0]), int(stats[i, 1]), int(stats[i, 0] + stats[i, 2]), int(stats[i, 1] + stats[i, 3])]
            for i in keep[:limit]]


def _describe(predictor, paths: list[Path]):
    """(confidence map, entropy map, descriptor, probabilities) of each image, the network run on the
    whole chunk at once (per-call overhead dominates small images)."""
    from pixelseg.data.io import read_image
    images = [read_image(p, predictor.info.preprocessing.in_channels) for p in paths]
    out = []
    for image, probs in zip(images, predictor.probs(images)):      # the run's temperature applied
        conf, ent = confidence_maps(probs, probs=True)
        img = image if image.ndim == 3 else image[:, :, None]
        feats = np.concatenate([pooled_features(probs, GRID),
                                pooled_features(np.moveaxis(img, 2, 0).astype(np.float32) / 255.0, GRID)])
        out.append((conf, ent, feats, probs))
    return out


def suggest(run, unlabeled, n: int = 10, seed: int = 0, out=None, *, kind: str = "entropy", device: str = "auto",
            gallery: int = 24, progress=None, labelme: bool = False) -> dict:
    """Rank the images under ``unlabeled`` (folders and/or files) and write OUT (default RUN/suggest); with
    labelme, also OUT/labelme: the picked images with the model's labels as LabelMe pre-labels."""
    from pixelseg.reports.audit_page import suggest_page
    from pixelseg.data.preprocess import list_inputs
    from pixelseg.fileio import write_json, write_text
    from pixelseg.inference.predictor import Predictor
    from pixelseg.run.folder import RunFolder

    if int(n) < 1:
        raise PixelsegError(f"--n {n}: give how many images to suggest (1 or more)")
    if kind not in KINDS:
        raise PixelsegError(f"unknown uncertainty kind {kind!r}; choose {', '.join(KINDS)}")
    folder = RunFolder(run)
    folder.info()                                    # not a run: the usual one-line error, before the pool is read
    pool = [str(u) for u in (unlabeled if isinstance(unlabeled, (list, tuple)) else [unlabeled])]
    paths = sorted(list_inputs(pool), key=str)
    predictor = Predictor(run, device)
    weights = _weights(folder, len(predictor.classes.names)) if kind == "balanced" else None
    scores, feats = [], []
    for i in range(0, len(paths), BATCH):     # only a score and a short vector are kept: the pool may be big
        for conf, ent, f, probs in _describe(predictor, paths[i:i + BATCH]):
            scores.append(balanced_entropy(probs, ent, weights) if weights is not None
                          else float(image_uncertainty_scores([(conf, ent)], kind)[0]))
            feats.append(f)
        if progress is not None:
            progress(len(scores), len(paths))
    picks = select_diverse(scores, np.stack(feats), k=int(n), seed=seed)
    result = {"run": str(folder.path), "pool": pool[0] if len(pool) == 1 else pool, "pool_size": len(paths),
              "n": int(n), "seed": int(seed), "kind": kind,
              **({"class_weights": [round(float(w), 4) for w in weights]} if weights is not None else {}),
              "picked": [{"rank": r + 1, "image": str(paths[i]), "score": scores[i]} for r, i in enumerate(picks)]}
    out = Path(out) if out is not None else folder.suggest_dir
    if labelme:
        from pixelseg.data.tools.labelling import check_export_folder
        check_export_folder(out / "labelme")      # before the work: it may hold someone's corrections
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "suggest.json", result)
    write_text(out / "suggest.txt", "".join(f"{e['image']}\n" for e in result["picked"]))
    shown = [_gallery_entry(predictor, paths[i]) for i in picks[:gallery]]
    suggest_page(out / "suggest.html", {**result, "picked": result["picked"][:gallery]}, shown, predictor.classes)
    result.update(json=str(out / "suggest.json"), txt=str(out / "suggest.txt"), html=str(out / "suggest.html"))
    if labelme:
        from pixelseg.data.tools.labelling import export_labelme
        export_labelme([(paths[i], predictor.predict(paths[i])) for i in picks], predictor.classes, out / "labelme")
        result["labelme"] = str(out / "labelme")
    return result


def _weights(folder, n_classes: int) -> np.ndarray:
    """Rarity weights of the run's training labels (recipe.json's class pixel counts, the ignored pixels' count
    last); all ones when the run folder does not have them (a run pulled without its recipe), which makes
    "balanced" plain entropy."""
    counts = (folder.recipe().get("class_pixels") or {}).get("train")
    if not counts or len(counts) != n_classes + 1:
        return np.ones(n_classes)
    return rarity_weights(counts[:n_classes])


def _gallery_entry(predictor, path: Path, shown: int = 320) -> dict:
    """The picked image's maps again (the first pass kept none), at most ``shown`` pixels on the long side."""
    from pixelseg.data.io import read_image
    _, ent, _, probs = _describe(predictor, [path])[0]
    image = read_image(path, 3)
    s = min(1.0, shown / max(ent.shape))
    size = (max(1, round(ent.shape[1] * s)), max(1, round(ent.shape[0] * s)))
    pred = probs.argmax(0).astype(np.int32)
    if s < 1:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ent = cv2.resize(ent, size, interpolation=cv2.INTER_AREA)
        pred = cv2.resize(pred, size, interpolation=cv2.INTER_NEAREST)
    return {"image": image, "entropy": ent, "pred": pred, "boxes": uncertain_boxes(ent)}
