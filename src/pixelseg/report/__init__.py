"""Reports people look at: training curves, per-class IoU, confusion matrix, calibration, best/worst images.

    from pixelseg.report import build_report, compare_runs
    build_report("runs/r")                      # -> runs/r/report/report.html (+ PNGs beside it)
    compare_runs(["runs/a", "runs/b"], out="compare.html")
"""
from pixelseg.report.analysis import Analysis, analyze_predictions, analyze_run
from pixelseg.report.builder import build_report
from pixelseg.report.compare import compare_runs

__all__ = ["Analysis", "analyze_run", "analyze_predictions", "build_report", "compare_runs"]
