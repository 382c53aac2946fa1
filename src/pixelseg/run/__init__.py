"""The run folder: the contract between training and everything after it. folder.py owns it (RunFolder, the
run's config, class table, preprocessing, weights and metrics), check.py checks a model description against
the run, checkpoints.py writes and reads weights and training state atomically."""
