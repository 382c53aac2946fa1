"""Measuring a run: `evaluate`, `report`, `compare`, `tune-threshold`. Each takes the run's own dataset when
--data is not given, and says which one it used."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from pixelseg.cli.common import (DATA_HELP, NON_NEGATIVE_INT, POSITIVE_INT, add_max_pixels, check_not_run_file, console,
                                  print_metrics)
from pixelseg.errors import PixelsegError

def add_parsers(sub) -> None:
    e = sub.add_parser("evaluate", help="metrics of a run (or of label maps from any model) on a split")
    e.add_argument("run", nargs="?", help="run folder, or hf://user/name")
    e.add_argument("--pred-dir", help="folder of <stem>.png label maps to score instead of a run (needs --data)")
    e.add_argument("--data", help=DATA_HELP)
    e.add_argument("--split", default="val", help="labelled split to score (default %(default)s)")
    e.add_argument("--json", help="also write the metrics to this JSON file")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    e.add_argument("--no-report", action="store_true",
                   help="skip the HTML report (RUN/report/report.html, or PRED_DIR/report/ with --pred-dir)")
    add_max_pixels(e)
    e.set_defaults(handler=cmd_evaluate)

    r = sub.add_parser("report", help="HTML report of a run: curves, per-class IoU, confusion, calibration, "
                                      "worst/best images")
    _run_and_split(r, "run folder", "labelled split to analyse")
    r.add_argument("--out", help="HTML file (default RUN/report/report.html; the PNGs always go to RUN/report/)")
    r.add_argument("--gallery", type=NON_NEGATIVE_INT, default=6,
                   help="worst and best images shown (default %(default)s each)")
    r.add_argument("--batch-size", type=POSITIVE_INT, default=4, help="default %(default)s")
    add_max_pixels(r)
    r.set_defaults(handler=cmd_report)

    c = sub.add_parser("compare", help="per-class IoU of runs side by side (a table, a bar chart, an HTML page); "
                                       "with --data or --paired: how sure it is that run A beats run B")
    c.add_argument("runs", nargs="+", metavar="RUN", help="run folders or metrics JSON files (evaluate --json)")
    c.add_argument("--out", help="also write an HTML page with the table and the chart")
    c.add_argument("--png", help="bar chart PNG (default: beside --out)")
    c.add_argument("--data", help="evaluate two runs on the same images of this dataset and compare them with a "
                                  "paired bootstrap (interval of the mIoU difference, probability A > B)")
    c.add_argument("--paired", action="store_true", help="the paired comparison on the data both runs were "
                                                         "trained on (no --data needed)")
    c.add_argument("--split", default="val", help="with --data/--paired: the labelled split (default %(default)s)")
    c.add_argument("--device", default="auto", help="with --data/--paired: auto | cpu | cuda | cuda:N")
    c.add_argument("--n-boot", type=POSITIVE_INT, default=1000, help="bootstrap resamples (default %(default)s)")
    c.add_argument("--json", help="with --data/--paired: also write the comparison to this JSON file")
    c.set_defaults(handler=cmd_compare)

    tt = sub.add_parser("tune-threshold", help="binary_sigmoid runs: the foreground threshold with the best mIoU on a "
                                               "labelled split, written into the run")
    _run_and_split(tt, "run folder trained with --binary-sigmoid", "labelled split to tune on")
    tt.add_argument("--json", help="also write the result to this JSON file")
    tt.set_defaults(handler=cmd_tune_threshold)

    from pixelseg.cli import calibrate        # measuring too: listed right after tune-threshold in --help
    calibrate.add_parser(sub)


def _run_and_split(p, run_help: str, split_help: str) -> None:
    p.add_argument("run", help=run_help)
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--split", default="val", help=f"{split_help} (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")


def run_data(run: str) -> Path:
    """The dataset `run` was trained on, for commands given no --data; a one-line error when it is gone."""
    from pixelseg.run.folder import RunFolder
    folder = RunFolder(run)
    folder.info(need_weights=False)          # not a run folder: the usual one-line error
    root = folder.require_data_root()
    print(f"data: {root} (the run's own, from {folder.config_path})")
    return root


def cmd_evaluate(a) -> int:
    from pixelseg.api import evaluate
    from pixelseg.fileio import write_json
    data = a.data
    if data is None and a.run is not None and a.pred_dir is None:
        data = run_data(a.run)
    report = not a.no_report       # RUN/report/ for a run, PRED_DIR/report/ for label maps
    check_not_run_file(a.json, a.run, "--json")
    m = evaluate(a.run, data, a.split, a.pred_dir, a.device, report=report)
    print_metrics_ci(m, f"{a.split} split of {data}: {m['images']} images, {m['source']}")
    if report:
        print(f"report: {m['report']}")
    if a.json:
        write_json(a.json, m)
        print(f"metrics written to {a.json}")
    return 0


def _with_ci(v, ci) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.1f}" + ("" if not ci else f" \\[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]")   # \\[: not markup


def print_metrics_ci(m: dict, title: str) -> None:
    """The metrics table; with intervals (evaluation.add_intervals) IoU, mIoU and pixel accuracy read
    "90.7 [89.9, 91.4]": the value on these images and its bootstrap interval."""
    if "ci" not in m:
        print_metrics(m, title)
        return
    from rich.markup import escape
    from rich.table import Table
    ci = m["ci"]
    absent = set(m.get("classes_absent", []))
    t = Table(title=escape(title), caption=escape(f"values in %; [low, high] = {100 * ci['level']:g}% interval, "
                                                  f"{ci['method']} "
                                   f"({ci['n_boot']} resamples); — = undefined; absent classes are left out of the "
                                   "means"), caption_justify="left")
    for col, just in (("class", "left"), ("IoU", "right"), ("accuracy", "right"), ("dice", "right")):
        t.add_column(col, justify=just)
    for name, c in m["per_class"].items():
        if name in absent:
            t.add_row(f"{name} (absent)", "—", "—", "—", style="dim")
            continue
        t.add_row(name if c["gt_pixels"] else f"{name} (not in GT)", _with_ci(c["iou"], c.get("iou_ci")),
                  _with_ci(c["accuracy"], None), _with_ci(c["dice"], None))
    t.add_section()
    t.add_row("mean", _with_ci(m["mIoU"], m.get("mIoU_ci")), _with_ci(m["mean_accuracy"], None),
              _with_ci(m["mean_dice"], None), style="bold")
    t.add_row("pixel accuracy", "", _with_ci(m["pixel_accuracy"], m.get("pixel_accuracy_ci")), "")
    console().print(t)


def cmd_report(a) -> int:
    from rich.progress import Progress

    from pixelseg.reports.builder import build_report
    from pixelseg.run.folder import RunFolder
    t0 = time.time()
    con = console()
    # a bar on a terminal (a 2000-image split takes minutes on a CPU); nothing in logs and CI
    with Progress(console=con, transient=True, disable=not con.is_terminal) as bar:
        task = bar.add_task("analysing the split", total=None)
        out = build_report(a.run, a.data, a.split, a.out, a.device, a.batch_size, a.gallery,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    print(f"report: {out} ({time.time() - t0:.1f}s; PNGs in {RunFolder(a.run).report_dir})")
    return 0


def cmd_compare(a) -> int:
    if a.data is not None or a.paired:
        return _compare_paired(a)
    from rich.table import Table

    from pixelseg.reports.compare import compare_runs
    res = compare_runs(a.runs, a.out, a.png)
    labels = res["labels"]
    pair = len(labels) == 2
    t = Table(title="per-class IoU (%)")
    t.add_column("class")
    for lab in labels:
        t.add_column(lab, justify="right")
    if pair:
        t.add_column("Δ", justify="right")

    def cell(v):
        return "—" if v is None else f"{100 * v:.1f}"

    def delta(a_, b_):
        return "—" if a_ is None or b_ is None else f"{100 * (b_ - a_):+.1f}"
    for i, name in enumerate(res["classes"]):
        vals = [res["iou"][lab][i] for lab in labels]
        t.add_row(name, *map(cell, vals), *([delta(*vals)] if pair else []))
    t.add_section()
    means = [res["mIoU"][lab] for lab in labels]
    t.add_row("mIoU", *map(cell, means), *([delta(*means)] if pair else []), style="bold")
    console().print(t)
    for w in res["warnings"]:       # the same warnings as the page's (issue 27)
        print(f"warning: {w}", file=sys.stderr)
    for key in ("png", "html"):
        if key in res:
            print(f"{key}: {res[key]}")
    return 0


def _compare_paired(a) -> int:
    from rich.markup import escape
    from rich.table import Table

    from pixelseg.measure.verbs import compare
    from pixelseg.fileio import write_json
    if len(a.runs) != 2:
        raise PixelsegError(f"compare --data/--paired takes two run folders (A and B), got {len(a.runs)}")
    r = compare(a.runs[0], a.runs[1], a.data, a.split, a.device, a.n_boot)
    na, nb = r["names"]
    t = Table(title=escape(f"A = {na}, B = {nb}: {a.split} split of {r['data']}, {r['images']} images"),
              caption=escape(f"IoU in %; A - B in points with its {100 * r['level']:g}% interval (paired bootstrap "
                             f"over images, {r['n_boot']} resamples); P(A > B) = share of resamples where A is "
                             "higher"), caption_justify="left")
    for col in ("class", "A", "B", "A - B [interval]", "P(A > B)"):
        t.add_column(col, justify="left" if col == "class" else "right")

    def row(name, va, vb, c, **kw):
        diff = "—" if c["difference"] is None else (f"{100 * c['difference']:+.1f}" + (
            "" if c["low"] is None else f" \\[{100 * c['low']:+.1f}, {100 * c['high']:+.1f}]"))
        p = "—" if c["prob_a_better"] is None else f"{100 * c['prob_a_better']:.1f}%"
        t.add_row(escape(name), _with_ci(va, None), _with_ci(vb, None), diff, p, **kw)
    for name, c in r["per_class_iou"].items():
        row(name, r["a"]["per_class"][name]["iou"], r["b"]["per_class"][name]["iou"], c)
    t.add_section()
    row("mIoU", r["a"]["mIoU"], r["b"]["mIoU"], r["mIoU"], style="bold")
    row("pixel accuracy", r["a"]["pixel_accuracy"], r["b"]["pixel_accuracy"], r["pixel_accuracy"])
    console().print(t)
    print(f"verdict: {r['verdict']}")
    if a.json:
        write_json(a.json, r)
        print(f"comparison written to {a.json}")
    if a.out:
        from pixelseg.reports.compare import paired_page
        print(f"html: {paired_page(r, a.runs, a.out)}")
    return 0


def cmd_tune_threshold(a) -> int:
    from pixelseg.measure.verbs import tune_threshold
    from pixelseg.fileio import write_json
    from pixelseg.run.folder import RunFolder
    check_not_run_file(a.json, a.run, "--json")
    r = tune_threshold(a.run, a.data, a.split, a.device)
    print(f"{a.split} split of {r['data']} ({r['images']} images)")
    print(f"threshold {r['threshold_before']:.2f} -> {r['threshold']:.2f}")
    print(f"mIoU      {r['mIoU_before']:.4f} -> {r['mIoU']:.4f}")
    print(f"written to {RunFolder(a.run).model_json}: predict, evaluate, export and serve use it")
    if a.json:
        write_json(a.json, r)
    return 0
