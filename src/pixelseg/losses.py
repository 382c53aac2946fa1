"""Segmentation losses with the ignore index honoured everywhere, and weighted sums of them.

``build_loss("0.5*focal+dice", num_classes=K)`` returns a module called as
``loss(logits N x K x H x W float, target N x H x W long) -> scalar``.

For every term, pixels whose target is the ignore index neither change the value nor receive a
gradient, and a batch where every pixel is ignored gives a loss of exactly 0 with zero gradients.

Terms:
  ce       torch cross-entropy; class weights and label smoothing apply here.
  dice     smp DiceLoss (multiclass, soft dice over the batch, 1 - dice averaged over classes; a class
           absent from the batch's ground truth contributes 0). Class weights weight the per-class terms.
  jaccard  smp JaccardLoss: as dice, with soft IoU.
  focal    one-vs-rest sigmoid focal loss (gamma 2) as smp's FocalLoss, computed with smp's functional
           over a mask instead of smp's boolean indexing. Class weights weight the per-class terms.
  lovasz   smp LovaszLoss (Lovasz-softmax over the classes present in the batch). Unweighted.
  ohem     online hard example mining cross-entropy (PSPNet/mmseg OHEM): the mean CE over the pixels
           whose true-class probability is below 0.7, and never fewer than 1/16 of the labelled pixels
           (the hardest ones). Class weights and label smoothing apply as for ce.

Where smp was wrong about ignored pixels (checked in tests/test_losses.py):
  - torch CrossEntropyLoss (reduction="mean") returns NaN when every pixel is ignored (0/0), so we
    reduce ourselves: sum of per-pixel losses / sum of target-class weights, the same value otherwise.
  - smp FocalLoss returns NaN when every pixel is ignored (mean of an empty tensor), so focal masks
    instead of indexing (which also spares K host syncs per step).
  - smp LovaszLoss returns an empty (0, K) tensor, not a scalar, when every pixel is ignored.
"""
from __future__ import annotations

import difflib
import math
import numbers
import re

import torch
import torch.nn.functional as F
from torch import nn

from pixelseg.errors import PixelsegError

__all__ = ["LOSS_NAMES", "build_loss", "SegmentationLoss", "parse_loss_spec"]

LOSS_NAMES = ("ce", "dice", "focal", "jaccard", "lovasz", "ohem")


class CrossEntropy(nn.Module):
    def __init__(self, num_classes: int, ignore_index: int, weight: torch.Tensor | None, label_smoothing: float):
        super().__init__()
        self.num_classes, self.ignore_index, self.label_smoothing = num_classes, ignore_index, label_smoothing
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = F.cross_entropy(logits.float(), target, weight=self.weight, ignore_index=self.ignore_index,
                                    reduction="none", label_smoothing=self.label_smoothing)  # 0 at ignored pixels
        valid = target != self.ignore_index
        if self.weight is None:
            denom = valid.sum().to(per_pixel.dtype)
        else:  # torch's weighted mean divides by the summed weight of each pixel's target class
            denom = (self.weight[torch.where(valid, target, 0)] * valid).sum()
        # An all-ignored batch is 0 / 0: torch says NaN, we say 0 (no ground truth, nothing to learn).
        return per_pixel.sum() / denom.clamp_min(1e-12)


class Focal(nn.Module):
    """smp's multiclass FocalLoss (one-vs-rest, per-class mean over non-ignored pixels, then mean over
    classes), with the ignore index applied by masking so an all-ignored batch gives 0, not NaN."""

    def __init__(self, num_classes: int, ignore_index: int, weight: torch.Tensor | None, gamma: float = 2.0):
        super().__init__()
        self.num_classes, self.ignore_index, self.gamma = num_classes, ignore_index, gamma
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from segmentation_models_pytorch.losses._functional import focal_loss_with_logits
        logits = logits.float()
        valid = target != self.ignore_index
        one_hot = F.one_hot(torch.where(valid, target, 0), self.num_classes).movedim(-1, 1).to(logits.dtype)
        per = focal_loss_with_logits(logits, one_hot, gamma=self.gamma, alpha=None, reduction="none")
        per = torch.where(valid.unsqueeze(1), per, 0.0)  # where, not *: no gradient reaches ignored pixels
        class_losses = per.sum(dim=(0, 2, 3)) / valid.sum().clamp_min(1)
        if self.weight is None:
            return class_losses.mean()
        return (class_losses * self.weight).sum() / self.weight.sum()


class Lovasz(nn.Module):
    def __init__(self, ignore_index: int):
        super().__init__()
        from segmentation_models_pytorch.losses import LovaszLoss
        self.inner = LovaszLoss(mode="multiclass", ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.inner(logits.float(), target)
        # smp returns an empty (0, K) tensor when all pixels are ignored (and a Python 0 when no class
        # is present); both mean "nothing to learn" and become a graph-connected scalar 0.
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            return logits.sum() * 0.0
        return loss


class _SmpRegion(nn.Module):
    """smp DiceLoss / JaccardLoss; they honour the ignore index (masked, checked in tests)."""

    def __init__(self, kind: str, ignore_index: int, weight: torch.Tensor | None):
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss, JaccardLoss
        cls = DiceLoss if kind == "dice" else JaccardLoss
        self.inner = cls(mode="multiclass", ignore_index=ignore_index,
                         class_weights=None if weight is None else weight.tolist())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # float32: the soft sums run over every pixel of the batch and overflow in fp16
        return self.inner(logits.float(), target)


# ---- OHEM cross-entropy (issue 7: class imbalance tools)

class OhemCrossEntropy(CrossEntropy):
    """Cross-entropy over the hard pixels only. A pixel is hard when the softmax probability of its
    true class is below `thresh`; if fewer than `min_kept` of the labelled pixels are hard, the
    `min_kept` share with the highest loss is kept instead, so easy batches still give a gradient."""

    def __init__(self, num_classes: int, ignore_index: int, weight: torch.Tensor | None, label_smoothing: float,
                 thresh: float = 0.7, min_kept: float = 1 / 16):
        super().__init__(num_classes, ignore_index, weight, label_smoothing)
        self.thresh, self.min_kept = thresh, min_kept

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = F.cross_entropy(logits.float(), target, weight=self.weight, ignore_index=self.ignore_index,
                                    reduction="none", label_smoothing=self.label_smoothing).flatten()
        valid = (target != self.ignore_index).flatten()
        n_valid = valid.sum()
        with torch.no_grad():
            # unweighted, unsmoothed CE = -log p(true class): "hard" is judged on the probability alone
            nll = F.cross_entropy(logits.detach().float(), torch.where(target == self.ignore_index, 0, target),
                                  reduction="none").flatten()
            keep = valid & (nll > -math.log(self.thresh))
            k = math.ceil(int(n_valid) * self.min_kept)          # one host sync: topk takes a Python int
            if k > 0:   # the k highest losses among labelled pixels are kept even when they look easy
                keep[torch.where(valid, nll, -1.0).topk(k).indices] = True
        if self.weight is None:
            denom = keep.sum().to(per_pixel.dtype)
        else:
            denom = (self.weight[torch.where(valid, target.flatten(), 0)] * keep).sum()
        return torch.where(keep, per_pixel, 0.0).sum() / denom.clamp_min(1e-12)


# ---- binary segmentation as one sigmoid channel (issue 3: data.binary_sigmoid)

class BinarySigmoid(nn.Module):
    """One term for 1-channel logits N x 1 x H x W and targets in {0, 1, ignore}: the sigmoid forms of the
    multiclass terms. ce = binary cross-entropy with logits (equal to 2-class CE with logits [0, x]);
    dice/jaccard = smp's binary mode; focal = smp's binary focal; lovasz = smp's Lovasz hinge. Class
    weights [w0, w1] weight each pixel by its class, as for ce."""

    def __init__(self, name: str, ignore_index: int, weight: torch.Tensor | None):
        super().__init__()
        if name == "ohem":
            raise PixelsegError("loss 'ohem' has no single-sigmoid form; use ce, dice, focal, jaccard or lovasz "
                                "with binary_sigmoid, or train binary data as 2 classes")
        self.name, self.ignore_index = name, ignore_index
        self.register_buffer("weight", weight, persistent=False)
        if name in ("dice", "jaccard", "lovasz"):
            from segmentation_models_pytorch.losses import DiceLoss, JaccardLoss, LovaszLoss
            cls = {"dice": DiceLoss, "jaccard": JaccardLoss, "lovasz": LovaszLoss}[name]
            self.inner = cls(mode="binary", ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != 1:
            raise ValueError(f"binary_sigmoid losses take 1-channel logits, got {logits.shape[1]} channels")
        x = logits.float()
        if self.name in ("dice", "jaccard", "lovasz"):
            loss = self.inner(x, target)
            return loss if isinstance(loss, torch.Tensor) and loss.dim() == 0 else x.sum() * 0.0
        valid = target != self.ignore_index
        t = torch.where(valid, target, 0)
        tf = t.unsqueeze(1).to(x.dtype)
        if self.name == "ce":
            per = F.binary_cross_entropy_with_logits(x, tf, reduction="none")
        else:  # focal
            from segmentation_models_pytorch.losses._functional import focal_loss_with_logits
            per = focal_loss_with_logits(x, tf, gamma=2.0, alpha=None, reduction="none")
        w = valid.to(x.dtype) if self.weight is None else self.weight[t] * valid
        # where, not *: ignored pixels get no gradient; an all-ignored batch is 0, not 0 / 0
        return torch.where(valid.unsqueeze(1), per * w.unsqueeze(1), 0.0).sum() / w.sum().clamp_min(1e-12)


class SegmentationLoss(nn.Module):
    """A weighted sum of loss terms. After each forward, ``last_terms`` maps each term's name to its
    unweighted value as a detached 0-d tensor (no host sync); ``term_values()`` gives Python floats."""

    def __init__(self, spec: str, terms: list[tuple[float, str, nn.Module]]):
        super().__init__()
        self.spec = spec
        self.weights = {name: w for w, name, _ in terms}
        self.terms = nn.ModuleDict({name: module for _, name, module in terms})
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0] \
                or logits.shape[2:] != target.shape[1:]:
            raise ValueError(f"expected logits N x K x H x W and target N x H x W, got {tuple(logits.shape)} "
                             f"and {tuple(target.shape)}")
        target = target.long()
        total, last = None, {}
        for name, term in self.terms.items():
            value = term(logits, target)
            last[name] = value.detach()
            weighted = value if self.weights[name] == 1.0 else self.weights[name] * value
            total = weighted if total is None else total + weighted
        self.last_terms = last
        return total

    def term_values(self) -> dict[str, float]:
        """The last forward's per-term values as floats (one host sync)."""
        if not self.last_terms:
            return {}
        values = torch.stack([v.float() for v in self.last_terms.values()]).cpu().tolist()
        return dict(zip(self.last_terms, values))

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_TERM = re.compile(rf"^\s*(?:({_NUMBER})\s*\*\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*$")


def parse_loss_spec(spec: str) -> list[tuple[float, str]]:
    """"0.5*focal+dice" -> [(0.5, "focal"), (1.0, "dice")], with clear errors for anything else."""
    usage = 'write one name or a sum such as "ce+dice" or "0.5*focal+dice"'
    if not isinstance(spec, str) or not spec.strip():
        raise PixelsegError(f"loss spec is empty; {usage} (valid names: {', '.join(LOSS_NAMES)})")
    terms: list[tuple[float, str]] = []
    for part in spec.split("+"):
        m = _TERM.match(part)
        if not m:
            raise PixelsegError(f"malformed loss spec {spec!r} at {part.strip()!r}; {usage} "
                                f"(valid names: {', '.join(LOSS_NAMES)})")
        weight, name = float(m.group(1)) if m.group(1) else 1.0, m.group(2).lower()
        if name not in LOSS_NAMES:
            close = difflib.get_close_matches(name, LOSS_NAMES, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise PixelsegError(f"unknown loss '{name}' in {spec!r}; {hint}valid: {', '.join(LOSS_NAMES)}")
        if not (math.isfinite(weight) and weight > 0):
            raise PixelsegError(f"loss weight {m.group(1)} for '{name}' in {spec!r} must be a positive number")
        if any(n == name for _, n in terms):
            raise PixelsegError(f"loss '{name}' appears twice in {spec!r}; give it one weight, e.g. '2*{name}'")
        terms.append((weight, name))
    return terms


def _class_weights(class_weights, num_classes: int) -> torch.Tensor | None:
    if class_weights is None:
        return None
    try:
        w = torch.as_tensor(class_weights, dtype=torch.float32).detach().cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise PixelsegError(f"class_weights must be a list of {num_classes} numbers, got {class_weights!r}") from None
    if w.numel() != num_classes:
        raise PixelsegError(f"class_weights (--class-weights) has {w.numel()} value(s) but there are {num_classes} classes; "
                            "give one weight per class")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not bool((w > 0).any()):
        raise PixelsegError(f"class_weights must be finite, non-negative and not all zero, got {w.tolist()}")
    return w


def build_loss(spec: str, num_classes: int, ignore_index: int = 255, class_weights=None,
               label_smoothing: float = 0.0, binary_sigmoid: bool = False) -> SegmentationLoss:
    """Build the loss named by ``spec`` ("ce", "dice", "ce+dice", "0.5*focal+dice", ...).

    ``class_weights`` (one per class) weight ce per pixel and dice/jaccard/focal per class; lovasz
    is unweighted. ``label_smoothing`` applies to ce only. With ``binary_sigmoid`` (2 classes), the
    model has one output channel and every term is its sigmoid form (BinarySigmoid)."""
    terms = parse_loss_spec(spec)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise PixelsegError(f"losses need at least 2 classes (binary = background + foreground), got {num_classes!r}")
    num_classes = int(num_classes)
    if not (0.0 <= float(label_smoothing) < 1.0):
        raise PixelsegError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    weight = _class_weights(class_weights, num_classes)
    if binary_sigmoid:
        if num_classes != 2:
            raise PixelsegError(f"binary_sigmoid needs exactly 2 classes (background, foreground), the data has "
                                f"{num_classes}; turn it off to train {num_classes} classes with softmax")
        if label_smoothing:
            raise PixelsegError("label_smoothing is not supported with binary_sigmoid; set it to 0")
        return SegmentationLoss(spec, [(w, name, BinarySigmoid(name, ignore_index, weight)) for w, name in terms])
    modules = []
    for w, name in terms:
        if name == "ce":
            module = CrossEntropy(num_classes, ignore_index, weight, float(label_smoothing))
        elif name in ("dice", "jaccard"):
            module = _SmpRegion(name, ignore_index, weight)
        elif name == "focal":
            module = Focal(num_classes, ignore_index, weight)
        elif name == "ohem":
            module = OhemCrossEntropy(num_classes, ignore_index, weight, float(label_smoothing))
        else:
            module = Lovasz(ignore_index)
        modules.append((w, name, module))
    return SegmentationLoss(spec, modules)
