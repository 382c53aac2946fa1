from pixelseg.inference.predictor import Predictor, resize_logits
from pixelseg.inference.tta import TTA

__all__ = ["TTA", "Predictor", "resize_logits"]
