"""pixelseg: semantic segmentation from a folder of images and masks to a trained, measured, fast model.

    run = pixelseg.train("data/", max_minutes=5)        # -> the run folder
    results = pixelseg.predict(run, "photos/")          # -> [Result]: .labels .probs .overlay() .save() .plot()
    pixelseg.evaluate(run); pixelseg.push(run, "me/road-seg"); pixelseg.load("hf://me/road-seg")
"""
from pixelseg.errors import PixelsegError

__version__ = "0.1.0"

# name -> module: imported on first use, so that `import pixelseg` (and the CLI's start-up) stays light while
# dir() and tab completion show the whole API
_LAZY = {"train": "pixelseg.api", "load": "pixelseg.api", "predict": "pixelseg.api", "evaluate": "pixelseg.api",
         "report": "pixelseg.api", "export": "pixelseg.api", "audit": "pixelseg.api", "suggest": "pixelseg.api",
         "bench": "pixelseg.api",
         "compare": "pixelseg.measure.verbs", "calibrate": "pixelseg.measure.verbs",
         "tune_threshold": "pixelseg.measure.verbs", "push": "pixelseg.hub", "pull": "pixelseg.hub",
         "Result": "pixelseg.inference.results", "Predictor": "pixelseg.inference.predictor"}
__all__ = ["PixelsegError", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    raise AttributeError(f"module 'pixelseg' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
