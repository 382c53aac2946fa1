"""Prediction: predictor.py (resize / tile / TTA over a run or an exported file), backends.py, outputs.py (every
prediction file, named and written in one place), results.py (the API's Result), tiling.py and rasters.py
(sliding windows, block-wise GeoTIFF), tta.py, video.py, jobs.py (file jobs, torchrun shares), vectors.py
(polygons), bench.py (speed per backend)."""
