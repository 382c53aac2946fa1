"""pixelseg: semantic segmentation from a folder of images and masks to a trained, measured, fast model."""
from pixelseg.errors import PixelsegError

__version__ = "0.1.0"
__all__ = ["PixelsegError", "__version__", "train", "load", "evaluate"]


def __getattr__(name):
    # The API functions import torch; keep `import pixelseg` (and the CLI's start-up) light.
    if name in ("train", "load", "evaluate"):
        from pixelseg import api
        return getattr(api, name)
    raise AttributeError(name)
