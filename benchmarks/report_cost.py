"""What does a report cost next to the evaluation it reports on? Measured on a 500-image val split.

    python benchmarks/report_cost.py [--val 500] [--size 128] [--model unet] [--classes 6|150] [--device cpu]

Steps, one after another in one process on this machine (so the ratios compare like with like):
  evaluate   pixelseg.evaluate(RUN, DATA): the plain evaluation (metrics only)
  analysis   the report's pass: the same evaluation plus per-image mIoU, gallery heaps, calibration
             (once at batch 1 like evaluate's loader, to isolate the extras; once at batch 4 as reports run)
  render     plots + gallery panels + HTML from that pass (what `evaluate` adds after its pass)
  report     `pixelseg report RUN` as a whole (its own pass + render), as at the end of training
With --classes 150 the same measure is made for an ADE20K-size class table (the synthetic masks use 6 of
the classes; the table, confusion matrix, bar chart and per-image matrices have all 150).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from pixelseg.run.folder import RunFolder  # noqa: E402


def _best_of(n: int, fn):
    """Best of n runs: the CPU is shared, the minimum is the least disturbed measurement."""
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", default="unet")
    ap.add_argument("--classes", type=int, default=6, help="size of the class table (6 = synth, 150 = ADE20K-size)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2, help="take the best of this many runs of each step")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice); 1 on a busy machine")
    ap.add_argument("--keep", help="keep the data and the run in this folder")
    a = ap.parse_args()

    import torch

    import pixelseg
    from pixelseg.data.tools.synth import generate
    from pixelseg.reports.analysis import analyze_run
    from pixelseg.reports.builder import build_report

    if a.threads:
        torch.set_num_threads(a.threads)

    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="report-cost-"))
    data, run = tmp / "data", tmp / "run"
    if not (data / "classes.json").is_file():
        generate(data, n_train=16, n_val=a.val, size=(a.size, a.size), seed=0, workers=2)
        if a.classes != 6:
            from pixelseg.data.classes import voc_colormap
            names = json.loads((data / "classes.json").read_text())["names"]
            names += [f"extra_{i}" for i in range(len(names), a.classes)]
            (data / "classes.json").write_text(json.dumps({"names": names, "colors": [list(c) for c in voc_colormap(a.classes)]}))
    if not RunFolder(run).has_weights():
        # one short epoch: the weights do not matter for the timing, the model's size does
        pixelseg.train(data, out=str(run), epochs=1, model=a.model, image_size=(a.size, a.size), batch_size=8,
                       num_workers=0, device=a.device, threads=a.threads, quiet=True)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    if a.device.startswith("cuda"):
        machine += f", {torch.cuda.get_device_name()}"
    print(f"report cost on {a.val} val images {a.size}x{a.size}, {a.model}, {a.classes} classes, {a.device} ({machine})")
    print(f"{'step':<46}{'seconds':>9}{'x evaluate':>12}", flush=True)
    t_eval = None

    def row(name: str, t: float) -> None:       # printed as measured: a long run still leaves its numbers
        print(f"{name:<46}{t:>9.2f}{t / t_eval:>12.2f}", flush=True)

    pixelseg.evaluate(run, data, device=a.device)          # warm-up: file cache, imports, first-call costs
    t_eval, _ = _best_of(a.repeat, lambda: pixelseg.evaluate(run, data, device=a.device))
    row("evaluate (metrics only)", t_eval)
    # evaluate's loader takes one image at a time: the same here isolates the cost of the report's extras
    t_same, _ = _best_of(a.repeat, lambda: analyze_run(run, data, device=a.device, batch_size=1))
    row("analysis pass, batch 1 as evaluate", t_same)
    t_analysis, analysis = _best_of(a.repeat, lambda: analyze_run(run, data, device=a.device))
    row("analysis pass (batch 4, what reports use)", t_analysis)
    t_render, _ = _best_of(a.repeat, lambda: build_report(run, analysis=analysis))
    row("render (plots, gallery, HTML)", t_render)
    row("`evaluate` with its report: analysis+render", t_analysis + t_render)
    t_report, _ = _best_of(1, lambda: build_report(run, data, device=a.device))
    row("`pixelseg report RUN` (own pass + render)", t_report)
    size = (run / "report" / "report.html").stat().st_size
    print(f"report.html: {size / 1e6:.1f} MB; the report's extras in the pass: {100 * (t_same - t_eval) / t_eval:+.0f}% "
          f"of evaluate; rendering: {100 * t_render / t_eval:.0f}% of evaluate")


if __name__ == "__main__":
    main()
