"""`pixelseg report` and `pixelseg compare`: the run folder (and one analysis pass) -> PNGs + one HTML page.

    RUN/report/curves.png        loss, val metrics, lr per epoch (from RUN/metrics.csv)
    RUN/report/class_iou.png     per-class IoU sorted, with pixel frequency
    RUN/report/confusion.png     row-normalized confusion matrix (the most confused classes when many)
    RUN/report/calibration.png   reliability diagram + pixels per confidence bin
    RUN/report/gallery/{worst,best}-NN-<stem>.png   image | GT | prediction | errors | confidence
    RUN/report/analysis.json     the numbers behind the plots (confusion matrix, per-image mIoU, calibration)
    RUN/report/report.html       all of the above in one self-contained page (or --out)
"""
from __future__ import annotations

import base64
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pixelseg.errors import PixelsegError
from pixelseg.fileio import write_json, write_text
from pixelseg.reports import html as H
from pixelseg.reports.analysis import Analysis, analyze_run
from pixelseg.run.folder import RunFolder

REPORT_DIR = RunFolder.REPORT   # a prediction folder's report goes to PRED_DIR/report/ too
PER_IMAGE_ROWS = 100     # images listed by mIoU below the gallery


def _count_parameters(weights: Path) -> int | None:
    """From the safetensors header only: no model is built, no tensor is read."""
    if not weights.is_file():
        return None
    from safetensors import safe_open
    try:
        with safe_open(str(weights), "pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:          # a damaged file is reported by whoever loads it; the summary just omits the count
        return None


def _minutes(s) -> str:
    return "—" if s is None else (f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s")


def _summary_rows(run: Path, info, config: dict, metrics: dict, recipe: dict, analysis: Analysis | None) -> list:
    data = config.get("data") or {}
    train = config.get("train") or {}
    loss = config.get("loss") or {}
    model = info.model + (f" / {info.encoder}" if info.encoder else "")
    params = _count_parameters(info.weights)
    if params:
        model += f" ({params / 1e6:.2f}M parameters)"
    pre = info.preprocessing
    budget = []
    if train.get("epochs"):
        budget.append(f"{train['epochs']} epochs")
    if train.get("max_minutes"):
        budget.append(f"{train['max_minutes']:g} min")
    hw = metrics.get("hardware") or (recipe.get("hardware") or {}).get("name") or "—"
    cores = (recipe.get("hardware") or {}).get("cores")
    names = list(info.classes.names)
    shown_names = ", ".join(names[:12]) + (f", … ({len(names)} in all)" if len(names) > 12 else "")
    rows = [("run", str(run)), ("model", model),
            ("input", f"{pre.image_size[0]}x{pre.image_size[1]}, {pre.in_channels} channel(s), resize {pre.resize}"),
            ("training data", f"{data.get('root', '—')} ({data.get('format', 'auto')} format, augment "
                              f"{data.get('augment', '—')})"),
            ("classes", f"{len(names)}: {shown_names} (ignore index {info.classes.ignore_index})"),
            ("budget", " / ".join(budget) or "—"),
            ("optimization", f"{loss.get('name', '—')} loss, lr {train.get('lr', '—')} ({train.get('schedule', '—')}), "
                             f"batch {train.get('batch_size', '—')}"),
            ("hardware", f"{hw}" + (f", {cores} cores" if cores and "core" not in str(hw) else "")),
            ("training time", _minutes(metrics.get("train_seconds"))
             + (f" (wall {_minutes(metrics.get('wall_seconds'))})" if metrics.get("wall_seconds") else "")),
            ("best checkpoint", f"epoch {info.best.get('epoch', '—')}, val mIoU {pct_or(info.best.get('mIoU'))}"),
            ("stopped", metrics.get("stopped") or "finished its epochs")]
    unl = metrics.get("unlabelled")
    if unl:      # engine/semi.py: what the images without masks gave
        by_class = ", ".join(f"{n} {100 * v:.1f}%" for n, v in unl["used_share_by_class"].items())
        start = f" from step {unl['from_step']}" if unl.get("from_step") else ""
        measured = (f"; pseudo-labels {100 * unl['pseudo_accuracy']:.1f}% right against the hidden masks"
                    if "pseudo_accuracy" in unl else "")
        if unl.get("pseudo_class_precision") is not None and unl.get("pseudo_class_recall") is not None:
            measured += (f" (mean over classes: precision {100 * unl['pseudo_class_precision']:.1f}%, "
                         f"recall {100 * unl['pseudo_class_recall']:.1f}%)")
        rows.insert(4, ("unlabelled images", f"{data.get('unlabelled', '—')}: {unl['images_drawn']} drawn{start}, "
                                             f"{100 * unl['used_share']:.1f}% of their pixels learned from ({by_class})"
                                             f"{measured}"))
    if analysis is not None:
        rows.append(("evaluated on", f"{analysis.data_root}, split '{analysis.split}', {len(analysis.per_image)} images "
                                     f"({analysis.seconds:.1f} s)"))
    return rows


def pct_or(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def pct_ci(v, ci) -> str:
    """A value with its interval, e.g. "90.70% [89.90, 91.40]"; the value alone when there is none."""
    return pct_or(v) if v is None or not ci else f"{100 * v:.2f}% [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


def _clear(folder: Path, pattern: str) -> None:
    """Remove this report's own earlier files (e.g. gallery panels of images no longer among the worst)."""
    if folder.is_dir():
        for p in folder.glob(pattern):
            p.unlink()


def _safe_stem(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80]


def build_report(run=None, data=None, split: str = "val", out=None, device: str = "auto", batch_size: int = 4,
                 gallery: int = 6, analysis: Analysis | None = None, num_workers: int = 0, progress=None) -> Path:
    """Write RUN/report/*.png, RUN/report/analysis.json and the HTML page (RUN/report/report.html or `out`).

    `analysis` reuses an evaluation pass already made (evaluate does this); without it one is run on
    `data` (default: the run's own dataset). When no data can be found, the page still shows the run's
    summary, curves and per-class IoU from metrics.json, and says what is missing.
    With run=None, `analysis` (of label maps, see analyze_predictions) is the whole report; it goes to
    PRED_DIR/report/ unless `out` says otherwise.
    """
    t0 = time.perf_counter()
    if run is None and analysis is None:
        raise PixelsegError("a report needs a run folder, or an analysis of label maps (evaluate --pred-dir)")
    run = Path(run) if run is not None else None
    base = run if run is not None else Path(analysis.source)
    out = Path(out) if out else (RunFolder(run).report_html if run is not None else base / REPORT_DIR / "report.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise PixelsegError(f"{out}: the report is an HTML page; give a path ending in .html")
    folder = RunFolder(run) if run is not None else None
    info = folder.info(need_weights=False) if folder else None
    config = folder.config_dict() if folder else {}
    metrics = (folder.metrics() or {}) if folder else {}
    recipe = folder.recipe() if folder else {}
    notes = []
    if analysis is None:
        root = data or folder.data_root()
        # data the user names must be there (analyze_run says what is wrong); the run's recorded dataset
        # may have moved since training, and then the page shows what the run folder alone holds
        if data is not None or (root is not None and folder.has_weights()):
            analysis = analyze_run(run, data, split, device, batch_size, gallery, num_workers, progress=progress)
        else:
            notes.append("The confusion matrix, the gallery and the calibration need the model and the validation "
                         f"data ({folder.data_settings().get('root') or 'no dataset recorded'} is not available): run "
                         f"`pixelseg report {run} --data ROOT`.")
    rdir = RunFolder(run).report_dir if run is not None else out.parent
    rdir.mkdir(parents=True, exist_ok=True)
    classes = info.classes if info is not None else analysis.classes
    names = list(classes.names)
    summary = analysis.summary if analysis is not None else (metrics if metrics.get("per_class") else None)
    sections = [_summary_section(run, info, config, metrics, recipe, analysis, summary, notes, names)]
    if run is not None:      # label maps from any model have no training to show
        sections.append(_curves_section(folder, info, rdir))
    if summary is not None:
        sections.append(_class_iou_section(summary, classes, analysis, rdir))
    if analysis is not None:
        sections.append(_confusion_section(analysis, names, rdir))
        sections.append(_calibration_section(analysis, rdir))
        if analysis.worst or analysis.best:
            sections.append(_gallery_section(analysis, classes, rdir))

    if analysis is not None:
        write_json(rdir / "analysis.json", analysis.to_json())
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = _title(base, folder, info)
    from pixelseg import __version__
    what = info.model if info is not None else "label maps"
    sub = f"{what}, {len(names)} classes · made {when} by pixelseg {__version__} in {time.perf_counter() - t0:.1f} s"
    write_text(out, H.page(title, sub, sections))
    return out


def _title(base: Path, folder: RunFolder | None, info) -> str:
    """The run itself, not only its folder: 'unet / resnet34 on roads, trained 2026-11-29 (exp1)'."""
    if folder is None or info is None:
        return f"pixelseg report — {base.name}"
    root = folder.data_settings().get("root")
    ended = next((p for p in (folder.metrics_path, folder.path / folder.MODEL) if p.is_file()), None)
    when = datetime.fromtimestamp(ended.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d") if ended else None
    return (f"pixelseg report — {info.model}{f' / {info.encoder}' if info.encoder else ''}"
            f"{f' on {Path(str(root)).name}' if root else ''}{f', trained {when}' if when else ''} ({base.name})")


def _summary_section(run, info, config, metrics, recipe, analysis, summary, notes, names) -> tuple:
    head = []
    if summary is not None:
        head = [("mIoU", pct_ci(summary.get("mIoU"), summary.get("mIoU_ci"))),
                ("pixel accuracy", pct_ci(summary.get("pixel_accuracy"), summary.get("pixel_accuracy_ci"))),
                ("mean accuracy", pct_or(summary.get("mean_accuracy"))), ("mean dice", pct_or(summary.get("mean_dice"))),
                ("freq.-weighted IoU", pct_or(summary.get("fw_iou")))]
        if analysis is not None and analysis.calibration:
            head.append(("unsure pixels", pct_or(analysis.calibration.get("unsure_share"))))
    verdict = metrics.get("verdict") or []       # engine/verdict.py: a run that learned little says so first
    inner = "".join(f'<p class="warn" role="alert">{H.escape(v)}</p>' for v in verdict)
    inner += H.cards(head) + "".join(f'<p class="note">{H.escape(n)}</p>' for n in notes)
    ci = (summary or {}).get("ci")
    if ci:
        inner += (f'<p class="sub" id="ci-note">[low, high]: {100 * ci["level"]:g}% interval, {ci["method"]} '
                  f'({ci["n_boot"]} resamples): where the metric would fall on another test set drawn like this '
                  "one.</p>")
    if run is not None:
        rows = _summary_rows(run, info, config, metrics, recipe, analysis)
    else:
        rows = [("predictions", analysis.source), ("classes", f"{len(names)}: " + ", ".join(names[:12])
                                                   + (f", … ({len(names)} in all)" if len(names) > 12 else "")),
                ("evaluated on", f"{analysis.data_root}, split '{analysis.split}', {len(analysis.per_image)} images")]
    return "summary", "Summary", inner + H.kv_table(rows, "summary")


def _curves_section(folder: RunFolder, info, rdir: Path) -> tuple:
    from pixelseg.reports import plots
    history = folder.history()
    best_epoch = info.best.get("epoch")
    best = float(best_epoch) if best_epoch is not None else None
    fig = plots.curves(history, best)
    if fig is None:
        return "curves", "Training curves", "<p class=note>No metrics.csv in the run folder: nothing to plot.</p>"
    png = plots.save_figure(fig, rdir / "curves.png")
    # a phone gets the panels stacked with larger type: the wide figure scaled to 360 px is unreadable
    narrow = base64.b64encode(plots.figure_png(plots.curves(history, best, narrow=True))).decode("ascii")
    picture = (f'<picture><source media="(max-width: 700px)" srcset="data:image/png;base64,{narrow}">'
               f'{H.img_tag(png, "training curves: loss, validation metrics, lr")}</picture>')
    return ("curves", "Training curves", picture
            + f"<p class=sub>{len(history)} rows of {folder.history_path}; dashed line: the kept (best) checkpoint.</p>")


def _class_iou_section(summary: dict, classes, analysis: Analysis | None, rdir: Path) -> tuple:
    from pixelseg.reports import plots
    names = list(classes.names)
    pc = summary["per_class"]
    png = plots.save_figure(plots.class_iou(names, [pc[n]["iou"] for n in names],
                                            [pc[n]["gt_pixels"] for n in names], classes.colors),
                            rdir / "class_iou.png")
    src = f"split '{analysis.split}' of {analysis.data_root}" if analysis else "metrics.json"
    return ("per-class-iou", "Per-class IoU", H.img_tag(png, "per-class IoU, sorted, with pixel frequency")
            + f"<p class=sub>Values from {H.escape(src)}. A class absent from both ground truth and "
              "prediction has no IoU and is left out of the mean.</p>"
            + H.per_class_table(summary, classes.colors))


def _confusion_section(analysis: Analysis, names: list, rdir: Path) -> tuple:
    from pixelseg.reports import plots
    cm = analysis.confusion
    shown = plots.most_confused_classes(cm)
    png = plots.save_figure(plots.confusion(cm, names, shown), rdir / "confusion.png")
    norm = plots.normalize_rows(cm)
    pairs = plots.confused_pairs(cm, 15)
    why = (f"<p class=sub>{len(shown)} of {len(names)} classes shown: those in the most confused pairs. The full "
           f"matrix is in {H.escape(str(rdir / 'analysis.json'))}.</p>" if len(shown) < len(names) else "")
    return ("confusion", "Confusion matrix",
            H.img_tag(png, "normalized confusion matrix") + why
            + "<h3>Most confused pairs</h3>" + H.pairs_table(pairs, names)
            + "<details><summary>the matrix as numbers (% of each ground-truth class; hover for "
              "pixel counts)</summary>" + H.confusion_table(cm, norm, names, shown) + "</details>")


def _calibration_section(analysis: Analysis, rdir: Path) -> tuple:
    from pixelseg.reports import plots
    c = analysis.calibration
    if not c:
        return ("calibration", "Calibration",
                "<p class=note>Label maps carry no probabilities: no calibration for a prediction folder.</p>")
    raw = analysis.calibration_before
    title = f"after calibration (T = {analysis.temperature:.3g})" if raw else ""
    png = plots.save_figure(plots.reliability(c, title), rdir / "calibration.png")
    imgs = H.img_tag(png, "reliability diagram")
    rows = [("expected calibration error", pct_or(c["ece"])),
            ("mean confidence", pct_or(c["mean_confidence"])), ("pixel accuracy", pct_or(c["accuracy_all"])),
            (f"unsure pixels (confidence < {c['unsure_threshold']:g})", pct_or(c["unsure_share"])),
            ("accuracy on unsure pixels", pct_or(c["unsure_accuracy"])),
            ("accuracy on the other pixels", pct_or(c["sure_accuracy"]))]
    if raw:      # a stored temperature: show the raw model beside the calibrated one
        before = plots.save_figure(plots.reliability(raw, "before calibration (T = 1)"),
                                   rdir / "calibration_before.png")
        imgs = H.img_tag(before, "reliability diagram before calibration") + imgs
        rows += [("temperature (pixelseg calibrate)", f"{analysis.temperature:.4g}"),
                 ("expected calibration error before calibration", pct_or(raw["ece"]))]
    else:
        _clear(rdir, "calibration_before.png")
    verdict = ""
    if c["mean_confidence"] is not None and c["accuracy_all"] is not None:
        d = c["mean_confidence"] - c["accuracy_all"]
        verdict = ("<p class=sub>The model is over-confident: its confidence exceeds its accuracy by "
                   f"{100 * d:.1f} points.</p>" if d > 0.02 else
                   "<p class=sub>The model is under-confident: its accuracy exceeds its confidence by "
                   f"{-100 * d:.1f} points.</p>" if d < -0.02 else
                   "<p class=sub>Confidence and accuracy agree within 2 points.</p>")
    return "calibration", "Calibration", imgs + verdict + H.kv_table(rows, "calibration-table")


def _gallery_section(analysis: Analysis, classes, rdir: Path) -> tuple:
    names = list(classes.names)
    gdir = rdir / "gallery"
    _clear(gdir, "worst-*.png")
    _clear(gdir, "best-*.png")
    inner = ("<p class=sub>Validation images ranked by their own mIoU. Errors: wrong pixels in red, ignored "
             "pixels dark. Confidence: the top class's probability (dark = unsure).</p>")
    present: set[int] = set()
    tables = ""
    for side, items in (("worst", analysis.worst), ("best", analysis.best)):
        rows = _gallery_rows(analysis, items, side, gdir, present)
        tables += f"<h3>{len(items)} {side}</h3>" + H.gallery_table(rows, f"gallery-{side}")
    # the legend lists only the classes these pictures show: 150 swatches would bury them
    inner += '<p class="legend">' + " ".join(f"<span>{H.swatch(classes.colors[i])}{H.escape(names[i])}</span>"
                                             for i in sorted(present) if i < len(names)) + "</p>" + tables
    ranked = [r for r in analysis.per_image if r["mIoU"] is not None]
    ranked.sort(key=lambda r: (r["mIoU"], r["pixel_accuracy"]))
    which = (f"all {len(ranked)} images" if len(ranked) <= PER_IMAGE_ROWS else
             f"the {PER_IMAGE_ROWS} lowest of {len(ranked)} images (all of them in analysis.json)")
    inner += (f"<details><summary>{which} by mIoU, lowest first</summary>"
              f"{H.per_image_table(ranked[:PER_IMAGE_ROWS])}</details>")
    return "gallery", "Worst and best images", inner


def _gallery_rows(analysis: Analysis, items, side: str, gdir: Path, present: set[int]) -> list:
    from pixelseg.data.io import read_image
    from pixelseg.data.labels import load_mask
    from pixelseg.reports import plots

    rows = []
    per_image = analysis.per_image
    for rank, g in enumerate(items, 1):
        image = read_image(g.sample.image)
        gt = load_mask(g.sample, analysis.mask_color_channel)
        present.update(int(v) for v in np.unique(gt))
        present.update(int(v) for v in np.unique(g.pred))
        panel = plots.gallery_panel(image, gt, g.pred, analysis.classes, g.confidence)
        png = plots.save_png(gdir / f"{side}-{rank:02d}-{_safe_stem(g.sample.stem)}.png", panel)
        row = dict(per_image[g.index])
        row["rank"] = rank
        rows.append((row, png))
    return rows
