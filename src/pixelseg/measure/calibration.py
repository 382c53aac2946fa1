"""Calibration: is a confidence of 0.8 right 80 % of the time? Temperature scaling and the reliability diagram.

- Temperature scaling divides the logits by one scalar T fitted on held-out pixels (Guo et al. 2017):
  T > 1 softens an over-confident model; the argmax, hence every label map and mIoU, is unchanged.
- Calibration bins are the report's (reports/analysis.py): 15 equal bins of the confidence, a pixel with
  confidence c in bin floor(c * bins) (1.0 in the last); ECE = sum over bins of |accuracy - confidence|
  weighted by the bin's share of pixels. Pixels whose label is the ignore index are left out.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from pixelseg.errors import PixelsegError
from pixelseg.models.outputs import as_tensor, class_dim

T_MIN, T_MAX = 0.05, 20.0
CALIBRATION_BINS = 15


def _labelled_pixels(scores, labels, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """P x K scores and P labels of the pixels whose label is not the ignore index; labels checked."""
    x, _ = as_tensor(scores, "logits")
    y, _ = as_tensor(labels, "labels")
    dim = class_dim(x, "logits")
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
