"""Measuring a run: `evaluate`, `report`, `compare`, `tune-threshold`. Each takes the run's own dataset when
--data is not given, and says which one it used."""
from __future__ import annotations

import time
from pathlib import Path

from pixelseg.cli.common import NON_NEGATIVE_INT, POSITIVE_INT, check_not_run_file, console, print_metrics
from pixelseg.errors import PixelsegError

DATA_HELP = "dataset root (default: the one the run was trained on, from RUN/config.yaml)"


def add_parsers(sub) -> None:
    e = sub.add_parser("evaluate", help="metrics of a run (or of label maps from any model) on a split")
    e.add_argument("run", nargs="?", help="run folder")
    e.add_argument("--pred-dir", help="folder of <stem>.png label maps to score instead of a run (needs --data)")
    e.add_argument("--data", help=DATA_HELP)
    e.add_argument("--split", default="val", help="labelled split to score (default %(default)s)")
    e.add_argument("--json", help="also write the metrics to this JSON file")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    e.add_argument("--no-report", action="store_true",
                   help="skip the HTML report (RUN/report/report.html, or PRED_DIR/report/ with --pred-dir)")
    e.set_defaults(handler=cmd_evaluate)

    r = sub.add_parser("report", help="HTML report of a run: curves, per-class IoU, confusion, calibration, "
                                      "worst/best images")
    _run_and_split(r, "run folder", "labelled split to analyse")
    r.add_argument("--out", help="HTML file (default RUN/report/report.html; the PNGs always go to RUN/report/)")
    r.add_argument("--gallery", type=NON_NEGATIVE_INT, default=6,
                   help="worst and best images shown (default %(default)s each)")
    r.add_argument("--batch-size", type=POSITIVE_INT, default=4, help="default %(default)s")
    r.set_defaults(handler=cmd_report)

    c = sub.add_parser("compare", help="per-class IoU of runs side by side: a table, a bar chart, an HTML page")
    c.add_argument("runs", nargs="+", metavar="RUN", help="run folders or metrics JSON files (evaluate --json)")
    c.add_argument("--out", help="also write an HTML page with the table and the chart")
    c.add_argument("--png", help="bar chart PNG (default: beside --out)")
    c.set_defaults(handler=cmd_compare)

    tt = sub.add_parser("tune-threshold", help="binary_sigmoid runs: the foreground threshold with the best mIoU on a "
                                               "labelled split, written into the run")
    _run_and_split(tt, "run folder trained with --binary-sigmoid", "labelled split to tune on")
    tt.add_argument("--json", help="also write the result to this JSON file")
    tt.set_defaults(handler=cmd_tune_threshold)


def _run_and_split(p, run_help: str, split_help: str) -> None:
    p.add_argument("run", help=run_help)
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--split", default="val", help=f"{split_help} (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")


def run_data(run: str) -> Path:
    """The dataset `run` was trained on, for commands given no --data; a one-line error when it is gone."""
    from pixelseg.run import RunFolder
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
    print_metrics(m, f"{a.split} split of {data}: {m['images']} images, {m['source']}")
    if report:
        print(f"report: {m['report']}")
    if a.json:
        write_json(a.json, m)
        print(f"metrics written to {a.json}")
    return 0


def cmd_report(a) -> int:
    from rich.progress import Progress

    from pixelseg.report import build_report
    from pixelseg.run import RunFolder
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
    from rich.table import Table

    from pixelseg.report import compare_runs
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
    for key in ("png", "html"):
        if key in res:
            print(f"{key}: {res[key]}")
    return 0


def cmd_tune_threshold(a) -> int:
    from pixelseg.api import tune_threshold
    from pixelseg.fileio import write_json
    from pixelseg.run import RunFolder
    check_not_run_file(a.json, a.run, "--json")
    r = tune_threshold(a.run, a.data, a.split, a.device)
    print(f"{a.split} split of {r['data']} ({r['images']} images)")
    print(f"threshold {r['threshold_before']:.2f} -> {r['threshold']:.2f}")
    print(f"mIoU      {r['mIoU_before']:.4f} -> {r['mIoU']:.4f}")
    print(f"written to {RunFolder(a.run).model_json}: predict, evaluate, export and serve use it")
    if a.json:
        write_json(a.json, r)
    return 0
