"""Measuring: the one evaluation pass (evaluation.py), confusion matrices and metrics (metrics.py), bootstrap
intervals and paired comparisons (stats.py), calibration (calibration.py), the labelled split of a run
(opener.py) and the measuring verbs built on them (verbs.py); collective.py sums matrices across ranks."""
