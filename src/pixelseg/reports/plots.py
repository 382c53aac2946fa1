"""The report's pictures: matplotlib (Agg) figures for charts, viz for label-map panels.

Every function takes plain data (numbers, names, arrays), so a plot can be redrawn from
RUN/report/analysis.json without the model or the dataset. Chart functions return the Figure (tests
read its artists back); save_figure writes it atomically as a PNG and closes it.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # no display, no GUI toolkit: reports are made on servers and in CI

import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pixelseg.fileio import atomic_path  # noqa: E402

DPI = 100
CONFUSION_MAX_CLASSES = 20   # beyond this a heatmap's labels stop being readable: show the most confused ones
WRONG_COLOR = (230, 25, 25)
IGNORE_SHOWN = (60, 60, 60)
PANEL_HEIGHT = (160, 256)    # gallery panels are scaled into this height range (pixels) ...
PANEL_MAX_WIDTH = 400        # ... and no wider than this: 12 rows of 5 panels stay a few MB of HTML
NARROW_FONT = 13             # points in the phone-width curves: ~11 px on a 360 px screen


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return path


def _rgb01(colors) -> np.ndarray:
    return np.asarray(colors, dtype=float).reshape(-1, 3) / 255.0


# ------------------------------------------------------------------------------------------ curves

def _number(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (closed after), for a picture the page embeds but the run folder need not keep."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def curves(history: list[dict], best_epoch: float | None = None, narrow: bool = False) -> Figure | None:
    """Loss, validation metrics and learning rate against the epoch, from RUN/metrics.csv rows.

    Columns are found by name (any '*loss*', any 'val_*', 'lr'), so new columns the trainer adds show up
    without a change here. None when there is nothing to plot. `narrow`: the panels stacked, 480 px wide with
    larger type, for a phone's width (the page offers it below 700 px).
    """
    with plt.rc_context({"font.size": NARROW_FONT if narrow else 10}):
        return _curves(history, best_epoch, narrow)


def _curves(history: list[dict], best_epoch: float | None, narrow: bool) -> Figure | None:
    if not history:
        return None
    cols = list(history[0])
    xkey = "epoch" if "epoch" in cols else None
    x = np.array([_number(r[xkey]) if xkey else i + 1 for i, r in enumerate(history)])
    loss_cols = [c for c in cols if "loss" in c]
    val_cols = [c for c in cols if c.startswith("val_") and "loss" not in c]
    panels = [("loss", loss_cols, False), ("validation", val_cols, False), ("learning rate", ["lr"] if "lr" in cols else [], True)]
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    shape, size = ((len(panels), 1), (4.8, 2.9 * len(panels))) if narrow else ((1, len(panels)), (4.4 * len(panels), 3.4))
    fig, axes = plt.subplots(*shape, figsize=size, layout="constrained", squeeze=False)
    for ax, (title, names, logy) in zip(axes.ravel(), panels):
        for c in names:
            y = np.array([_number(r.get(c)) for r in history])
            ok = ~np.isnan(y)
            if not ok.any():
                continue
            style = "o-" if ok.sum() < 30 else "-"
            ax.plot(x[ok], y[ok], style, ms=3, lw=1.4, label=c.removeprefix("val_"))
        if best_epoch is not None and title == "validation":
            # a time budget ends mid-epoch (21.98): the label names the epoch it was reached in (22)
            ax.axvline(best_epoch, color="0.5", ls="--", lw=1, label=f"best ({math.ceil(best_epoch - 1e-9)})")
        if logy and ax.lines and all(np.nanmin(line.get_ydata()) > 0 for line in ax.lines):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch" if xkey else "validation #")
        ax.grid(alpha=0.3)
        if title == "validation":
            ax.set_ylim(0, 1)
        if ax.lines:
            ax.legend(fontsize=NARROW_FONT - 2 if narrow else 8)
    return fig


# ------------------------------------------------------------------------------------ per-class IoU

def class_iou(names, ious, gt_pixels, colors) -> Figure:
    """Per-class IoU sorted best to worst, each bar in its class color, and beside it the class's share
    of the ground-truth pixels (a low IoU on a rare class reads differently from one on a common class).
    Classes with undefined IoU (absent from ground truth and prediction) come last, marked 'absent'."""
    names = list(names)
    ious = np.array([math.nan if v is None else v for v in ious], dtype=float)
    gt = np.asarray(gt_pixels, dtype=float)
    share = 100.0 * gt / gt.sum() if gt.sum() > 0 else np.zeros_like(gt)
    order = sorted(range(len(names)), key=lambda i: (math.isnan(ious[i]), -np.nan_to_num(ious[i], nan=0.0), i))
    k = len(names)
    row_in = 0.17 if k > 40 else 0.26
    fs = 6.5 if k > 40 else 8.5
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.5, max(2.6, 0.9 + row_in * k)), sharey=True,
                                 gridspec_kw={"width_ratios": [3, 1.3]}, layout="constrained")
    y = np.arange(k)
    cols = _rgb01(colors)[order]
    vals = np.nan_to_num(ious[order], nan=0.0)
    a1.barh(y, vals, color=cols, edgecolor="0.35", linewidth=0.5)
    for yi, i in zip(y, order):
        txt = "absent" if math.isnan(ious[i]) else f"{100 * ious[i]:.1f}"
        a1.text(min(np.nan_to_num(ious[i], nan=0.0), 1.0) + 0.01, yi, txt, va="center", fontsize=fs - 0.5)
    a1.set_yticks(y, [names[i] for i in order], fontsize=fs)
    a1.set_ylim(k - 0.5, -0.5)                     # best at the top, no empty margin rows (150 classes)
    if k > 40:                                     # a tall chart: the scales at its top too
        for ax in (a1, a2):
            ax.tick_params(axis="x", labeltop=True)
    a1.set_xlim(0, 1.12)
    a1.set_xlabel("IoU")
    a1.set_title("per-class IoU (sorted)")
    a1.grid(axis="x", alpha=0.3)
    a2.barh(y, share[order], color="0.55")
    for yi, i in zip(y, order):
        a2.text(share[i], yi, f" {share[i]:.1f}%" if share[i] >= 0.05 or share[i] == 0 else " <0.1%",
                va="center", fontsize=fs - 0.5)
    a2.set_xlim(0, max(1.0, share.max() * 1.45))
    a2.set_xlabel("% of ground-truth pixels")
    a2.set_title("pixel frequency")
    a2.grid(axis="x", alpha=0.3)
    return fig


# -------------------------------------------------------------------------------------- confusion

def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Row-normalized confusion: entry (i, j) = share of class i's ground-truth pixels predicted as j.
    Rows of classes without ground truth are NaN (undefined, drawn blank)."""
    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rows > 0, cm / np.where(rows > 0, rows, 1), np.nan)


def confused_pairs(cm: np.ndarray, limit: int = 15) -> list[tuple[int, int, int, float]]:
    """(true class, predicted class, pixels, share of the true class's pixels), most pixels first."""
    cm = np.asarray(cm)
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    rows = cm.sum(1)
    flat = np.argsort(off, axis=None, kind="stable")[::-1]
    out = []
    for f in flat[:limit]:
        i, j = divmod(int(f), cm.shape[0])
        if off[i, j] <= 0:
            break
        out.append((i, j, int(off[i, j]), float(off[i, j] / rows[i])))
    return out


def most_confused_classes(cm: np.ndarray, limit: int = CONFUSION_MAX_CLASSES) -> list[int]:
    """Up to `limit` class indices taken from the most confused pairs (by pixels), in class order.
    With no confusion at all (a perfect model) the most frequent classes are taken."""
    cm = np.asarray(cm)
    k = cm.shape[0]
    if k <= limit:
        return list(range(k))
    chosen: list[int] = []
    for i, j, _, _ in confused_pairs(cm, limit=k * k):
        for c in (i, j):
            if c not in chosen and len(chosen) < limit:
                chosen.append(c)
        if len(chosen) >= limit:
            break
    for c in np.argsort(-cm.sum(1), kind="stable"):
        if len(chosen) >= limit:
            break
        if int(c) not in chosen:
            chosen.append(int(c))
    return sorted(chosen)


def confusion(cm: np.ndarray, names, shown: list[int] | None = None) -> Figure:
    """Row-normalized confusion matrix as a heatmap (rows: ground truth, columns: prediction), with the
    percentages written in the cells. `shown` restricts it to some classes (rows keep their full-matrix
    normalization, so a row may not sum to 100% when its errors go to a class not shown)."""
    names = list(names)
    shown = list(range(len(names))) if shown is None else list(shown)
    norm = normalize_rows(cm)[np.ix_(shown, shown)]
    n = len(shown)
    side = max(3.6, 0.42 * n + 2.2)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    cmap = plt.get_cmap("Blues").with_extremes(bad="0.92")
    im = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    labels = [names[i] for i in shown]
    fs = 8 if n <= 12 else 7
    ax.set_xticks(range(n), labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=fs)
    ax.set_yticks(range(n), labels, fontsize=fs)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    for r in range(n):
        for c in range(n):
            v = norm[r, c]
            if not math.isnan(v) and v >= 0.005:
                ax.text(c, r, f"{100 * v:.0f}", ha="center", va="center", fontsize=fs - 1,
                        color="white" if v > 0.55 else "0.15")
    title = "confusion matrix (% of each ground-truth class)"
    if n < len(names):
        title = f"{n} most confused of {len(names)} classes (% of each ground-truth class)"
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, format=lambda v, _: f"{100 * v:.0f}%")
    return fig


# ------------------------------------------------------------------------------------ calibration

def reliability(calib: dict, title: str = "") -> Figure:
    """Reliability diagram (accuracy per confidence bin against the diagonal) and how the pixels
    spread over the confidence bins, with the 'unsure' threshold marked; `title` names the variant
    (e.g. before / after calibration)."""
    edges = np.asarray(calib["edges"], dtype=float)
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    acc = np.array([math.nan if v is None else v for v in calib["accuracy"]], dtype=float)
    conf = np.array([math.nan if v is None else v for v in calib["confidence"]], dtype=float)
    count = np.asarray(calib["count"], dtype=float)
    share = 100 * count / max(count.sum(), 1)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ok = ~np.isnan(acc)
    a1.bar(centers[ok], acc[ok], width=width * 0.95, color="#4477aa", edgecolor="#223355", label="accuracy")
    a1.bar(centers[ok], (conf - acc)[ok], bottom=acc[ok], width=width * 0.95, color="#ee6677", alpha=0.35,
           edgecolor="#ee6677", hatch="//", label="gap to confidence")
    a1.plot([0, 1], [0, 1], "--", color="0.3", lw=1, label="perfect calibration")
    a1.set_xlim(0, 1)
    a1.set_ylim(0, 1)
    a1.set_xlabel("confidence (max softmax probability)")
    a1.set_ylabel("share of correct pixels")
    ece = calib.get("ece")
    a1.set_title(f"reliability {title}".strip() + (f" — ECE {100 * ece:.2f}%" if ece is not None else ""),
                 fontsize=10)
    a1.legend(fontsize=8, loc="upper left")
    a1.grid(alpha=0.3)
    a2.bar(centers, share, width=width * 0.95, color="0.55")
    thr = calib.get("unsure_threshold")
    if thr is not None:
        a2.axvline(thr, color="#ee6677", ls="--", lw=1.2)
        us = calib.get("unsure_share")
        if us is not None:
            a2.text(thr, a2.get_ylim()[1] * 0.92, f"  unsure (< {thr:g}): {100 * us:.1f}% of pixels",
                    color="#aa3344", fontsize=9)
    a2.set_xlim(0, 1)
    a2.set_xlabel("confidence")
    a2.set_ylabel("% of pixels")
    a2.set_title("pixels per confidence bin")
    a2.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------------- gallery

def _fit_height(img: np.ndarray, nearest: bool) -> np.ndarray:
    h, w = img.shape[:2]
    lo, hi = PANEL_HEIGHT
    target = min(max(h, lo), hi)
    if w * target > PANEL_MAX_WIDTH * h:           # wide images (2:1 street scenes): cap the width instead
        target = max(64, round(PANEL_MAX_WIDTH * h / w))
    if target == h:
        return img
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_LINEAR if target > h else cv2.INTER_AREA)
    return cv2.resize(img, (max(1, round(w * target / h)), target), interpolation=interp)


def error_map(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, ignore_index: int) -> np.ndarray:
    """The image faded to light gray, wrong pixels in red, ignored pixels dark: where the model fails."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    faded = (140 + gray.astype(np.float32) * (100 / 255)).astype(np.uint8)
    out = np.repeat(faded[:, :, None], 3, axis=2)
    ignore = gt == ignore_index
    out[(gt != pred) & ~ignore] = WRONG_COLOR
    out[ignore] = IGNORE_SHOWN
    return out


def confidence_map(conf: np.ndarray) -> np.ndarray:
    """Max probability 0..1 -> viridis RGB (dark = unsure)."""
    rgba = plt.get_cmap("viridis")(np.clip(conf.astype(np.float32), 0, 1))
    return (rgba[:, :, :3] * 255).astype(np.uint8)


def gallery_panel(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, classes, confidence=None) -> np.ndarray:
    """image | ground truth | prediction | errors [| confidence] in one row, each titled."""
    from pixelseg.viz.overlay import colorize
    from pixelseg.viz.drawing import side_by_side

    if image.ndim == 3 and image.shape[2] not in (3, 4):
        image = image[:, :, 0]               # multispectral: the first band, in gray
    rgb = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb[:, :, :3])
    if rgb.shape[:2] != gt.shape:
        rgb = cv2.resize(rgb, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_AREA)
    ign = classes.ignore_index
    panels = [_fit_height(rgb, False),
              _fit_height(colorize(gt, classes.colors, ign), True),
              _fit_height(colorize(pred, classes.colors, ign), True),
              _fit_height(error_map(rgb, gt, pred, ign), True)]
    titles = ["image", "ground truth", "prediction", "errors (red)"]
    if confidence is not None:
        panels.append(with_colorbar(_fit_height(confidence_map(confidence), True)))
        titles.append("confidence")
    row = side_by_side(panels, titles)
    if max(gt.shape) <= ZOOM_ABOVE:
        return row
    # a big image shrunk to a panel hides its objects: a second row shows the worst region at native resolution
    y0, x0, size = worst_window((gt != pred) & (gt != ign), ZOOM_WINDOW)
    crop = (slice(y0, y0 + size), slice(x0, x0 + size))
    zoom = side_by_side([_fit_height(rgb[crop], False), _fit_height(colorize(gt[crop], classes.colors, ign), True),
                         _fit_height(colorize(pred[crop], classes.colors, ign), True),
                         _fit_height(error_map(rgb[crop], gt[crop], pred[crop], ign), True)],
                        [f"zoom: most errors, rows {y0}-{y0 + size}, cols {x0}-{x0 + size}", "ground truth",
                         "prediction", "errors (red)"])
    width = max(row.shape[1], zoom.shape[1])
    pad = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in (row, zoom)]
    return np.vstack(pad)


ZOOM_ABOVE = 768       # images with a longer side get a zoomed row in the gallery
ZOOM_WINDOW = 256      # its side, in the image's pixels (shown at about native resolution)


def worst_window(wrong: np.ndarray, size: int) -> tuple[int, int, int]:
    """(y0, x0, side) of the square window of `size` (at most the image's short side) holding the most True
    pixels of `wrong`: the region of the image where the model fails most."""
    h, w = wrong.shape
    side = min(size, h, w)
    counts = cv2.boxFilter(wrong.astype(np.float32), -1, (side, side), normalize=False,
                           borderType=cv2.BORDER_CONSTANT)
    half = side // 2
    valid = counts[half:h - (side - half) + 1, half:w - (side - half) + 1]   # windows fully inside the image
    cy, cx = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(cy), int(cx), side


def with_colorbar(panel: np.ndarray) -> np.ndarray:
    """A confidence picture with its scale at the right: the viridis ramp from 1 (top) to 0 (bottom),
    labelled 1, 0.5 and 0, so dark reads as 'unsure' without a legend elsewhere."""
    from PIL import Image, ImageDraw, ImageFont
    h = panel.shape[0]
    bar_w, gap, fs = max(6, h // 16), max(2, h // 60), max(9, h // 12)
    ramp = confidence_map(np.repeat(np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None], bar_w, axis=1))
    font = ImageFont.load_default(size=fs)
    label_w = int(max(font.getlength(t) for t in ("1", "0.5", "0"))) + 4
    labels = Image.new("RGB", (label_w, h), (255, 255, 255))
    draw = ImageDraw.Draw(labels)
    for text, y, anchor in (("1", 0, "lt"), ("0.5", h / 2, "lm"), ("0", h - 1, "lb")):
        draw.text((2, y), text, fill=(40, 40, 40), font=font, anchor=anchor)
    white = np.full((h, gap, 3), 255, np.uint8)
    return np.hstack([panel, white, ramp, np.asarray(labels)])


def save_png(path, rgb: np.ndarray) -> Path:
    from PIL import Image
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG", optimize=False, compress_level=6)
    return path


# ---------------------------------------------------------------------------------------- compare

def compare_bars(names, runs: dict[str, list], means: dict[str, float | None] | None = None) -> Figure:
    """Per-class IoU of several runs as grouped horizontal bars (one group per class, one bar per run),
    headed by a group for the mIoU when `means` is given."""
    names = list(names)
    labels = list(runs)
    if means is not None:
        names = ["mIoU"] + names
        runs = {lab: [means.get(lab)] + list(runs[lab]) for lab in labels}
    k, r = len(names), len(labels)
    row_in = max(0.22, 0.1 * r + 0.08)
    fig, ax = plt.subplots(figsize=(9, max(2.8, 1.2 + row_in * k)), layout="constrained")
    h = 0.8 / r
    palette = plt.get_cmap("tab10")
    for j, lab in enumerate(labels):
        vals = np.array([math.nan if v is None else v for v in runs[lab]], dtype=float)
        ax.barh(np.arange(k) - 0.4 + h * (j + 0.5), np.nan_to_num(vals, nan=0.0), height=h,
                color=palette(j % 10), label=lab)
    ax.set_yticks(range(k), names, fontsize=8 if k <= 40 else 6.5)
    if means is not None:
        ax.get_yticklabels()[0].set_fontweight("bold")
        ax.axhline(0.5, color="0.6", lw=0.8)
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    ax.set_title("per-class IoU by run")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig
