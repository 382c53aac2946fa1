from pixelseg.inference.predictor import Predictor, resize_logits

__all__ = ["Predictor", "resize_logits"]
