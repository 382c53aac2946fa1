"""Reports people look at: training curves, per-class IoU, confusion matrix, calibration, best/worst images.

    from pixelseg.reports.builder import build_report
    from pixelseg.reports.compare import compare_runs
    build_report("runs/r")                      # -> runs/r/report/report.html (+ PNGs beside it)
    compare_runs(["runs/a", "runs/b"], out="compare.html")
"""
