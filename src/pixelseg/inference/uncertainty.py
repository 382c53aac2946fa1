"""What the model does not know: per-pixel confidence, calibration, and which images to label next.

Conventions:
- Confidence of a pixel = its largest class probability (softmax over K >= 2 channels; with one sigmoid
  channel, max(p, 1 - p)). Entropy is normalized by log K (log 2 for one channel), so both maps lie in
  [0, 1]: 1 = sure (confidence) or 1 = as unsure as a uniform guess (entropy).
- Temperature scaling divides the logits by one scalar T fitted on held-out pixels (Guo et al. 2017):
  T > 1 softens an over-confident model; the argmax, hence every label map and mIoU, is unchanged.
- Calibration bins are the report's (report/analysis.py): 15 equal bins of the confidence, a pixel with
  confidence c in bin floor(c * bins) (1.0 in the last); ECE = sum over bins of |accuracy - confidence|
  weighted by the bin's share of pixels. Pixels whose label is the ignore index are left out.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pixelseg.errors import PixelsegError

__all__ = ["confidence_maps", "to_png8", "fit_temperature", "expected_calibration_error",
           "reliability_diagram_data", "image_uncertainty_scores", "rarity_weights", "balanced_entropy",
           "pooled_features", "select_diverse"]

T_MIN, T_MAX = 0.05, 20.0
CALIBRATION_BINS = 15


def _tensor(x, what: str) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)), True
    if isinstance(x, torch.Tensor):
        return x, False
    raise PixelsegError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__}")


def _class_dim(x: torch.Tensor, what: str) -> int:
    if x.dim() not in (3, 4):
        raise PixelsegError(f"{what} must be K x H x W or N x K x H x W, got shape {tuple(x.shape)}")
    return x.dim() - 3


def confidence_maps(scores, probs: bool = False, temperature: float = 1.0):
    """(max probability, normalized entropy) per pixel of logits (or probabilities with ``probs=True``)
    shaped N x K x H x W or K x H x W; both maps N x H x W (or H x W), float32 in [0, 1]. Numpy in,
    numpy out. ``temperature`` divides the logits first (see fit_temperature)."""
    x, was_numpy = _tensor(scores, "scores")
    dim = _class_dim(x, "scores")
    x = x.float()
    k = x.shape[dim]
    if probs:
        p = x.clamp(0.0, 1.0)
        if k == 1:
            p = torch.cat([1.0 - p, p], dim)
        logp = torch.log(p.clamp_min(1e-12))
    else:
        x = x / float(temperature)
        if k == 1:                               # one sigmoid channel: the classes are (not x, x)
            x = torch.cat([torch.zeros_like(x), x], dim)
        logp = torch.log_softmax(x, dim)
        p = logp.exp()
    kk = max(k, 2)
    conf = p.amax(dim).clamp_(0.0, 1.0)
    ent = (-(p * logp).sum(dim) / math.log(kk)).clamp_(0.0, 1.0)
    return (conf.numpy(), ent.numpy()) if was_numpy else (conf, ent)


def to_png8(values) -> np.ndarray:
    """A map in [0, 1] as uint8 0..255 (value * 255, rounded; NaN -> 0) for an 8-bit grayscale PNG.
    Decoding is byte / 255, within 1/510 of the value."""
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    v = np.nan_to_num(v.astype(np.float32), nan=0.0)
    return np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8)


def _labelled_pixels(scores, labels, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """P x K scores and P labels of the pixels whose label is not the ignore index; labels checked."""
    x, _ = _tensor(scores, "logits")
    y, _ = _tensor(labels, "labels")
    dim = _class_dim(x, "logits")
    k = x.shape[dim]
    if x.dim() == 3:
        x = x[None]
    if y.dim() == 2:
        y = y[None]
    if tuple(y.shape) != (x.shape[0], *x.shape[2:]):
        raise PixelsegError(f"labels {tuple(y.shape)} do not match the scores {tuple(x.shape)} (N x H x W)")
    y = y.reshape(-1).long().to(x.device)
    keep = y != ignore_index
    y = y[keep]
    kk = max(k, 2)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= kk):
        bad = torch.unique(y[(y < 0) | (y >= kk)])[:10].tolist()
        raise PixelsegError(f"label value(s) {bad} are neither classes 0..{kk - 1} nor the ignore index "
                            f"{ignore_index}; fix the masks or the class table")
    return x.movedim(1, -1).reshape(-1, k)[keep], y


def fit_temperature(logits, labels, ignore_index: int = 255, max_pixels: int = 200_000, seed: int = 0) -> float:
    """The temperature T in [0.05, 20] that minimizes the negative log-likelihood of ``labels`` under
    softmax(logits / T), over at most ``max_pixels`` labelled pixels drawn with ``seed``.

    The NLL is convex in 1/T, so a bounded L-BFGS (scipy's L-BFGS-B) on b = 1/T in [1/20, 1/0.05] finds
    the global optimum; the subsample keeps it to a fraction of a second on millions of pixels."""
    from scipy.optimize import minimize

    x, y = _labelled_pixels(logits, labels, ignore_index)
    if y.numel() == 0:
        raise PixelsegError("no labelled pixel to fit a temperature on (every label is the ignore index)")
    if len(y) > max_pixels:
        pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:max_pixels]
        x, y = x[pick.to(x.device)], y[pick.to(y.device)]
    x = x.double()
    if x.shape[1] == 1:
        x = torch.cat([torch.zeros_like(x), x], 1)
    xy = x.gather(1, y[:, None])[:, 0]

    def nll_and_grad(b):
        z = x * float(b[0])
        lse = torch.logsumexp(z, 1)
        p = torch.softmax(z, 1)
        nll = float((lse - z.gather(1, y[:, None])[:, 0]).mean())
        grad = float(((p * x).sum(1) - xy).mean())
        return nll, np.array([grad])
    res = minimize(nll_and_grad, x0=np.array([1.0]), jac=True, method="L-BFGS-B", bounds=[(1 / T_MAX, 1 / T_MIN)])
    return float(np.clip(1.0 / float(res.x[0]), T_MIN, T_MAX))


def _confidence_and_correct(probs, labels, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    p, y = _labelled_pixels(probs, labels, ignore_index)
    if p.shape[1] == 1:
        p = torch.cat([1.0 - p, p], 1)
    conf, pred = p.float().max(1)
    return conf.cpu().numpy().astype(np.float64), (pred == y).cpu().numpy()


def reliability_diagram_data(probs, labels, bins: int = CALIBRATION_BINS, ignore_index: int = 255) -> dict:
    """Per confidence bin: pixel count, mean confidence and accuracy (None for an empty bin), plus the
    ECE; the keys of the report's calibration dict (report.plots.reliability draws it). ``probs``:
    N x K x H x W (or K x H x W) class probabilities, e.g. softmax(logits / T); ``labels``: N x H x W."""
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    conf, correct = _confidence_and_correct(probs, labels, ignore_index)
    b = np.clip((conf * bins).astype(np.int64), 0, bins - 1)
    n = np.bincount(b, minlength=bins).astype(np.float64)
    csum = np.bincount(b, weights=conf, minlength=bins)
    ok = np.bincount(b, weights=correct.astype(np.float64), minlength=bins)
    filled = n > 0
    c_mean = np.divide(csum, n, out=np.full(bins, np.nan), where=filled)
    acc = np.divide(ok, n, out=np.full(bins, np.nan), where=filled)
    total = n.sum()
    ece = float(np.abs(acc - c_mean)[filled] @ n[filled] / total) if total else None

    def num(v):
        return None if not math.isfinite(v) else float(v)
    return {"bins": int(bins), "edges": np.linspace(0, 1, bins + 1).round(6).tolist(),
            "count": [int(v) for v in n], "confidence": [num(v) for v in c_mean],
            "accuracy": [num(v) for v in acc], "ece": ece, "pixels": int(total)}


def expected_calibration_error(probs, labels, bins: int = CALIBRATION_BINS, ignore_index: int = 255) -> float:
    """ECE in [0, 1] of ``probs`` (N x K x H x W class probabilities) against ``labels``; NaN without a
    labelled pixel."""
    ece = reliability_diagram_data(probs, labels, bins, ignore_index)["ece"]
    return math.nan if ece is None else ece


# ------------------------------------------------------------------------------ what to label next

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
    x, _ = _tensor(maps, "maps")
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
