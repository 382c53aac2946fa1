"""The end-of-training verdict: does the finished run look like it learned something?

A run can end "successfully" with a model that is useless: it predicts the dominant class everywhere (mIoU
then equals that class's share, e.g. 0.10 with ten classes), or it stopped after a handful of steps while its
validation score was still climbing. Neither is an error, and both are easy to miss in a table of numbers, so
the trainer writes what it sees into metrics.json ("verdict"), prints it, and the report shows it as a banner.

Rules (each from the validation confusion matrix of the best checkpoint and the run's history):
  one class      one predicted class holds >= 99 % of the predicted pixels while it holds < 95 % of the truth
  never seen     classes present in the truth that the model never predicts (named, most pixels first)
  too short      fewer than MIN_STEPS optimizer steps
  still rising   the last validation improved on the one before by >= RISING points of mIoU
"""
from __future__ import annotations

import numpy as np

MIN_STEPS = 100
RISING = 0.02
ONE_CLASS = 0.99


def verdict(matrix: np.ndarray, class_names, steps: int, history: list[dict], budgeted: bool) -> list[str]:
    """Warnings about a finished run, [] when nothing looks wrong. `matrix`: K x K, rows truth, columns
    prediction; `history`: the per-validation rows (val_mIoU); `budgeted`: the run had --max-minutes."""
    out: list[str] = []
    more = "more --max-minutes" if budgeted else "more --epochs"
    m = np.asarray(matrix, dtype=np.float64)
    truth, pred = m.sum(1), m.sum(0)
    total = pred.sum()
    if total > 0:
        top = int(pred.argmax())
        if pred[top] / total >= ONE_CLASS and truth[top] / total < 0.95:
            out.append(f"the model predicts '{class_names[top]}' almost everywhere ({pred[top] / total:.1%} of the "
                       f"pixels, {truth[top] / total:.1%} in the truth): it has not learned the other classes; "
                       f"train longer ({more}), or check the masks with `pixelseg verify-dataset`")
        else:
            missed = [i for i in np.argsort(-truth) if truth[i] > 0 and pred[i] == 0]
            if missed:
                names = ", ".join(f"'{class_names[i]}'" for i in missed[:5]) + (" ..." if len(missed) > 5 else "")
                out.append(f"{len(missed)} class(es) present in the validation masks are never predicted: {names}; "
                           f"train longer ({more}), give them more examples, or try --sampling repeat")
    if steps < MIN_STEPS:
        out.append(f"only {steps} optimizer steps: far too few to converge; give the run {more} (or a GPU)")
    scores = [float(r["val_mIoU"]) for r in history            # "" in the rows of epochs without a validation
              if isinstance(r.get("val_mIoU"), (int, float)) and np.isfinite(r["val_mIoU"])]
    if len(scores) >= 2 and scores[-1] - scores[-2] >= RISING and steps >= MIN_STEPS:
        out.append(f"validation mIoU was still rising at the end ({scores[-2]:.3f} -> {scores[-1]:.3f}): the model "
                   f"has not converged; {more} should give a better one")
    return out
