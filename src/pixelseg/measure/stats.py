"""How sure is a metric? Bootstrap intervals over images, and a paired comparison of two models.

Both resample *images*, not pixels: the pixels of one image are not independent (one mislabelled
object moves thousands of them together), so the image is the unit a new test set would redraw.
A resample is N images drawn with replacement; its confusion matrix is the sum of theirs, which is a
matrix product of multinomial draw counts (B x N) with the per-image matrices (N x K*K): exact, and
fast enough for thousands of resamples. The metrics of a resample follow metrics.py: a class absent
from both ground truth and prediction of that resample is left out of its mIoU.

Intervals are percentile intervals of the resampled values (``level`` = 0.95: the 2.5th and 97.5th
percentiles). The "probability that A is better" is the bootstrap share of resamples where A's
metric is higher, a tie counting one half: a model compared with itself gets exactly 0.5 and an
interval [0, 0], which reads as "no clear difference". Everything is deterministic for a seed.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["bootstrap_ci", "paired_bootstrap", "verdict", "resample_counts"]

_CHUNK_FLOATS = 1 << 23          # resampled matrices held at once (64 MB of float64): K = 150 fits 370 per chunk


def _check_mats(mats, what: str = "per_image_mats") -> np.ndarray:
    m = np.asarray(mats)
    if m.ndim != 3 or m.shape[1] != m.shape[2] or m.shape[0] < 1:
        raise ValueError(f"{what} must be N x K x K with N >= 1 (one confusion matrix per image), got {m.shape}")
    if not np.issubdtype(m.dtype, np.integer) or (m < 0).any():
        raise ValueError(f"{what} must hold non-negative integer pixel counts, got dtype {m.dtype}")
    return m.astype(np.float64)      # exact: float64 holds integers up to 2**53


def _check_args(n_boot: int, level: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")


def resample_counts(n_images: int, n_boot: int, seed: int) -> np.ndarray:
    """B x N: how often each image is drawn in each of the B resamples (each row sums to N)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=int(n_boot))


def _metrics(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mIoU [B], pixel accuracy [B], IoU [B, K]) of B matrices B x K x K; NaN where undefined."""
    tp = np.diagonal(m, axis1=1, axis2=2)
    den = m.sum(2) + m.sum(1) - tp                   # 0 exactly when the class is in neither GT nor prediction
    iou = np.divide(tp, den, out=np.full(tp.shape, np.nan), where=den > 0)
    defined = (den > 0).sum(1)
    miou = np.divide(np.nansum(iou, 1), defined, out=np.full(len(m), np.nan), where=defined > 0)
    total = m.sum((1, 2))
    acc = np.divide(tp.sum(1), total, out=np.full(len(m), np.nan), where=total > 0)
    return miou, acc, iou


def _resampled(mats: np.ndarray, counts: np.ndarray):
    """Metrics of every resample, computed a chunk of resamples at a time to bound memory."""
    n, k = mats.shape[0], mats.shape[1]
    flat = mats.reshape(n, k * k)
    step = max(1, _CHUNK_FLOATS // (k * k))
    parts = [_metrics((counts[i:i + step] @ flat).reshape(-1, k, k)) for i in range(0, len(counts), step)]
    return tuple(np.concatenate(p) for p in zip(*parts))


def _interval(values: np.ndarray, level: float) -> tuple[float | None, float | None]:
    v = values[~np.isnan(values)]
    if v.size == 0:
        return None, None
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _num(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _estimate(point: float, values: np.ndarray, level: float) -> dict:
    lo, hi = _interval(values, level)
    return {"value": _num(point), "low": lo, "high": hi}


def bootstrap_ci(per_image_mats, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile intervals for mIoU, pixel accuracy and each class's IoU from a bootstrap over images.

    ``per_image_mats``: N x K x K integer confusion matrices, one per image (metrics.per_image_confusion).
    Returns a JSON-ready dict: {"mIoU": {"value", "low", "high"}, "pixel_accuracy": {...},
    "per_class_iou": [{"value", "low", "high"} per class], "level", "n_boot", "images", "seed"}. A value
    is the metric of all images together (as metrics.summarize gives it); a class absent from every image
    has value, low and high None. A class's interval is over the resamples in which it is defined.
    """
    _check_args(n_boot, level)
    mats = _check_mats(per_image_mats)
    miou0, acc0, iou0 = _metrics(mats.sum(0, keepdims=True))
    miou, acc, iou = _resampled(mats, resample_counts(len(mats), n_boot, seed))
    return {
        "level": level, "n_boot": int(n_boot), "images": len(mats), "seed": seed,
        "mIoU": _estimate(miou0[0], miou, level),
        "pixel_accuracy": _estimate(acc0[0], acc, level),
        "per_class_iou": [_estimate(iou0[0, c], iou[:, c], level) for c in range(mats.shape[1])],
    }


def _prob_better(diff: np.ndarray) -> float | None:
    """Share of resamples with diff > 0, ties counting one half; over the resamples where it is defined."""
    d = diff[~np.isnan(diff)]
    if d.size == 0:
        return None
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def _comparison(point: float, diff: np.ndarray, level: float) -> dict:
    lo, hi = _interval(diff, level)
    return {"difference": _num(point), "low": lo, "high": hi, "prob_a_better": _prob_better(diff)}


def _pct(p: float, n_boot: int) -> str:
    # every resample agreeing says "more than 1 - 1/B", not certainty
    return f"over {100 * (1 - 1 / n_boot):.4g}%" if p >= 1.0 else f"{100 * p:.1f}%"


def verdict(result: dict, a_name: str = "A", b_name: str = "B") -> str:
    """Plain words for a paired_bootstrap result's mIoU comparison."""
    c, level = result["mIoU"], result["level"]
    if c["difference"] is None or c["low"] is None:
        return "no comparison: no class is defined in these images"
    pts = "{:+.2f} [{:+.2f}, {:+.2f}] mIoU points".format(*(100 * c[k] + 0.0 for k in ("difference", "low", "high")))
    detail = (f"the difference {a_name} - {b_name} is {pts} ({100 * level:g}% interval, "
              f"{result['n_boot']} resamples of {result['images']} images)")
    p, n = c["prob_a_better"], result["n_boot"]
    if c["low"] > 0:
        return f"{a_name} is better than {b_name} with {_pct(p, n)} probability; {detail}"
    if c["high"] < 0:
        return f"{b_name} is better than {a_name} with {_pct(1 - p, n)} probability; {detail}"
    return f"no clear difference ({a_name} is better than {b_name} with {_pct(p, n)} probability); {detail}"


def paired_bootstrap(mats_a, mats_b, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                     a_name: str = "A", b_name: str = "B") -> dict:
    """Compare models A and B on the same N images (same order): both are resampled with the same draws,
    so what the images have in common (hard images are hard for both) cancels out of the difference.

    Returns a JSON-ready dict: {"mIoU": {"difference" (A - B, all images), "low", "high", "prob_a_better"},
    "pixel_accuracy": {...}, "per_class_iou": [{...} per class, None values where a class is undefined
    for either model in every resample], "verdict": plain words, "level", "n_boot", "images", "seed"}.
    "A is better" is said only when the interval lies above 0 (below 0: "B is better"), otherwise
    "no clear difference".
    """
    _check_args(n_boot, level)
    a, b = _check_mats(mats_a, "mats_a"), _check_mats(mats_b, "mats_b")
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs the same images and classes for both models: "
                         f"mats_a is {a.shape}, mats_b is {b.shape}")
    counts = resample_counts(len(a), n_boot, seed)
    (ma0, aa0, ia0), (mb0, ab0, ib0) = _metrics(a.sum(0, keepdims=True)), _metrics(b.sum(0, keepdims=True))
    (ma, aa, ia), (mb, ab, ib) = _resampled(a, counts), _resampled(b, counts)
    out = {
        "level": level, "n_boot": int(n_boot), "images": len(a), "seed": seed,
        "mIoU": _comparison(ma0[0] - mb0[0], ma - mb, level),
        "pixel_accuracy": _comparison(aa0[0] - ab0[0], aa - ab, level),
        "per_class_iou": [_comparison(ia0[0, c] - ib0[0, c], ia[:, c] - ib[:, c], level) for c in range(a.shape[1])],
    }
    out["verdict"] = verdict(out, a_name, b_name)
    return out
