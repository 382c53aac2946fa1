"""Which images to label next: one uncertainty score per image, class-rarity weights, and a diverse pick."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pixelseg.errors import PixelsegError
from pixelseg.models.outputs import as_tensor


def image_uncertainty_scores(conf_maps: Iterable, kind: str = "entropy", threshold: float = 0.5) -> np.ndarray:
    """One score per image, higher = more worth labelling, from per-image (max_prob, entropy) pairs
    (e.g. ``zip(*confidence_maps(logits))``; images may differ in size).

    kind "entropy": mean normalized entropy; "low_confidence": share of pixels with max probability
    below ``threshold``; "margin": 1 - mean max probability."""
    if kind not in ("entropy", "low_confidence", "margin"):
        raise PixelsegError(f"unknown uncertainty kind {kind!r}; choose entropy, low_confidence or margin")
    out = []
    for conf, ent in conf_maps:
        c = conf.detach().cpu().numpy() if isinstance(conf, torch.Tensor) else np.asarray(conf)
        e = ent.detach().cpu().numpy() if isinstance(ent, torch.Tensor) else np.asarray(ent)
        if c.size == 0:
            out.append(0.0)
        elif kind == "entropy":
            out.append(float(e.mean(dtype=np.float64)))
        elif kind == "low_confidence":
            out.append(float((c < threshold).mean()))
        else:
            out.append(float(1.0 - c.mean(dtype=np.float64)))
    return np.asarray(out, dtype=np.float64)


def rarity_weights(class_pixels, cap: float = 10.0) -> np.ndarray:
    """One weight per class from the labelled pixels of each (e.g. the run's train split): the median class
    frequency over the class's, frequencies taken over all labelled pixels (recipe.json keeps split totals,
    not the per-image counts data/sampling.median_frequency_weights needs for Eigen & Fergus' exact form),
    so a class the labels hold little of weighs more, at most ``cap`` times the median class; a class never
    labelled gets ``cap``. All ones when nothing is labelled."""
    c = np.asarray(class_pixels, dtype=np.float64).reshape(-1)
    if c.sum() <= 0:
        return np.ones_like(c)
    f = c / c.sum()
    seen = f > 0
    w = np.full_like(f, cap)
    w[seen] = np.minimum(np.median(f[seen]) / f[seen], cap)
    return w


def balanced_entropy(probs, entropy, weights) -> float:
    """Mean over pixels of entropy x the pixel's expected class weight (sum over classes of probability x
    weight): uncertainty on classes the labels hold little of counts more than uncertainty on common ones."""
    p = np.asarray(probs, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64).reshape(-1, *([1] * (p.ndim - 1)))
    if p.size == 0:
        return 0.0
    return float((np.asarray(entropy, dtype=np.float64) * (p * w).sum(0)).mean())


def pooled_features(maps, grid: int = 4) -> np.ndarray:
    """A cheap image descriptor for select_diverse: a C x H x W map (an image, or the class probabilities
    of one) mean-pooled to C x grid x grid and flattened. Near-duplicate images get near-equal vectors."""
    x, _ = as_tensor(maps, "maps")
    if x.dim() != 3:
        raise PixelsegError(f"maps must be C x H x W, got shape {tuple(x.shape)}")
    return F.adaptive_avg_pool2d(x.float()[None], grid)[0].reshape(-1).cpu().numpy().astype(np.float64)


def select_diverse(scores: Sequence[float], features=None, k: int = 10, seed: int = 0, pool: float = 4.0) -> list[int]:
    """Indices of ``k`` images to label next, in pick order: uncertain ones that are not alike.

    Among the ceil(pool * k) most uncertain images, the first pick is the most uncertain; each next one
    maximizes uncertainty x distance (in ``features``, N x D) to the nearest image already picked, so a
    near-duplicate of a picked image scores about 0 and ten copies of one hard frame are not all picked.
    Without features it is the top-k by score. ``seed`` breaks ties (equal scores) reproducibly."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = len(s)
    if np.isnan(s).any():
        raise ValueError("uncertainty scores contain NaN")
    k = min(int(k), n)
    if k <= 0:
        return []
    order = np.random.default_rng(seed).permutation(n)           # ties go to the earlier in this order
    order = order[np.argsort(-s[order], kind="stable")]
    if features is None:
        return [int(i) for i in order[:k]]
    f = np.asarray(features, dtype=np.float64).reshape(n, -1)
    cand = order[:max(k, math.ceil(pool * k))]
    fc = f[cand]
    fc = (fc - fc.mean(0)) / (fc.std(0) + 1e-12)                 # every feature counts alike
    u = s[cand] - min(s[cand].min(), 0.0) + 1e-12                # positive, so distance always matters
    nearest = np.full(len(cand), np.inf)
    picked = [0]
    for _ in range(k - 1):
        nearest = np.minimum(nearest, np.linalg.norm(fc - fc[picked[-1]], axis=1))
        gain = u * nearest
        gain[picked] = -1.0
        picked.append(int(np.argmax(gain)))                      # first maximum: the candidate order decides ties
    return [int(cand[i]) for i in picked]
