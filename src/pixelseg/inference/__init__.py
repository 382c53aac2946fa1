"""Prediction: predictor.py (resize / tile / TTA over a run), backends.py, results.py (the API's Result), the
uncertainty maps, windows.py (sliding windows), tiling.py, rasters.py (block-wise GeoTIFF), video.py, jobs.py,
vectors.py, bench.py."""
