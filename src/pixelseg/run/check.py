"""Strict checks of a run description (RUN/model.json) beyond its JSON shape, for run.read_run: a hand-edited
"160" or [0, 0] must be one line naming the file, not garbage predictions or a failure inside a resize."""
from __future__ import annotations

from pixelseg.config import IMAGE_SIDE_MAX


def description_problem(pre, model: dict, num_classes: int) -> str | None:
    """What makes the preprocessing (run.Preprocessing) or the model entry unusable; None when nothing."""
    size, c, num = pre.image_size, pre.in_channels, (int, float)
    if len(size) != 2 or not all(type(x) is int and 0 < x <= IMAGE_SIDE_MAX for x in size):
        return f"image_size {list(size)} is not two whole numbers in 1..{IMAGE_SIDE_MAX}"
    if c < 1 or not len(pre.mean) == len(pre.std) == c or not all(type(x) in num for x in pre.mean + pre.std):
        return f"mean and std need {c} number(s) each, one per input channel"
    if min(pre.std) <= 0:
        return f"std {list(pre.std)} must be positive"
    if pre.resize not in ("stretch", "scale"):
        return f"resize {pre.resize!r} is not 'stretch' or 'scale'"
    if pre.resize == "scale" and not (type(pre.scale) in num and 0 < pre.scale <= 16):
        return f"scale {pre.scale!r} is not a resize factor in (0, 16]"
    if model.get("num_classes", num_classes) != num_classes:
        return f"model.num_classes {model['num_classes']} but the class table has {num_classes} classes"
    t = model.get("sigmoid_threshold")
    if t is not None and not (type(t) in num and 0 < t < 1):
        return f"sigmoid_threshold {t!r} is not in (0, 1)"
    return None
