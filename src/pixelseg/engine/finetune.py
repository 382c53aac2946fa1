"""Fine-tuning: start a run from the weights of another (a pixelseg run folder or a weights file), with
any number of classes.

Every tensor whose name and shape match is loaded; the classifier of a different class count is left
at its fresh initialisation; the first convolution is adapted when the channel count differs. The user
is told exactly what was loaded and what was not, so a silent mismatch cannot pass for a fine-tune.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pixelseg.config import Config
from pixelseg.errors import PixelsegError

_WRAPPERS = ("module.", "_orig_mod.", "model.")   # DDP, torch.compile, Lightning-style checkpoints


@dataclass
class InitReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)          # input convs: other channel count
    reinitialised: list[str] = field(default_factory=list)    # name matches, shape does not (e.g. the head)
    missing: list[str] = field(default_factory=list)          # not in the source at all
    unused: list[str] = field(default_factory=list)           # in the source, not in this model

    def summary(self, total: int) -> str:
        def short(keys: list[str]) -> str:
            names = sorted({k.rsplit(".", 1)[0] for k in keys})
            return ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
        parts = [f"init from {self.source}: {len(self.loaded) + len(self.adapted)}/{total} tensors loaded"]
        if self.adapted:
            parts.append(f"input conv adapted to the new channel count ({short(self.adapted)})")
        if self.reinitialised:
            parts.append(f"re-initialised, shape differs (new class count?): {short(self.reinitialised)}")
        if self.missing:
            parts.append(f"not in the source, left at init: {short(self.missing)}")
        if self.unused:
            parts.append(f"{len(self.unused)} source tensors unused")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": len(self.loaded), "adapted": self.adapted,
                "reinitialised": self.reinitialised, "missing": self.missing, "unused": len(self.unused)}


def adopt_run_architecture(cfg: Config) -> Config:
    """With --init-from RUN and no --model/--encoder, fine-tune the run's own architecture."""
    from pixelseg.run.folder import RunFolder

    src = cfg.model.init_from
    if not src or not RunFolder(src).is_run():
        return cfg
    info = RunFolder(src).info(need_weights=False)
    overrides = {}
    if cfg.model.name is None:
        overrides["model.name"] = info.model
    if cfg.model.encoder is None and (cfg.model.name in (None, info.model)):
        overrides["model.encoder"] = info.encoder
    return cfg.replace(**overrides) if overrides else cfg


def read_source(source: str | Path, model_name: str | None = None) -> tuple[dict, str, object]:
    """(state_dict, description, RunInfo or None) for a run folder or a weights file."""
    from pixelseg.run.folder import RunFolder

    path = Path(source)
    info = None
    if path.is_dir():
        if not RunFolder(path).is_run():
            raise PixelsegError(f"{path}: not a pixelseg run folder (no model.json); give a run folder or a "
                                ".safetensors/.pth weights file to --init-from")
        info = RunFolder(path).info()
        if model_name is not None and info.model != model_name:
            raise PixelsegError(f"{path}: was trained as '{info.model}', this run is '{model_name}'; fine-tune the same "
                                f"architecture (--model {info.model}) or use --teacher {path} to distill across models")
        path = info.weights
    elif not path.is_file():
        raise PixelsegError(f"{path}: not found; --init-from takes a pixelseg run folder or a .safetensors/.pth file")
    from pixelseg.models.base import read_weights_file

    state = read_weights_file(path)
    for key in ("model", "state_dict"):     # a pixelseg last.pt, or a common training checkpoint
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PixelsegError(f"{path}: does not hold a state_dict of tensors; save model.state_dict() (safetensors preferred)")
    return state, str(source), info


def init_from(model: nn.Module, source: str | Path, model_name: str | None = None) -> InitReport:
    """Load every matching tensor of `source` into `model`; see the module docstring."""
    from pixelseg.models.base import adapt_first_conv, strip_prefixes

    state, desc, info = read_source(source, model_name)
    target = model.state_dict()

    src = {strip_prefixes(k, _WRAPPERS, target): v for k, v in state.items()}
    in_ch = _in_channels(model)
    report = InitReport(desc)
    new = {}
    for k, t in target.items():
        if k not in src:
            report.missing.append(k)
        elif src[k].shape == t.shape:
            new[k] = src[k].to(t.dtype)
            report.loaded.append(k)
        elif t.ndim == 4 and t.shape[1] == in_ch and src[k].shape[:1] + src[k].shape[2:] == t.shape[:1] + t.shape[2:]:
            # a conv on the input image (BiSeNetV2 has two): only the channel count changed
            new[k] = adapt_first_conv(src[k].float(), t.shape[1]).to(t.dtype)
            report.adapted.append(k)
        else:
            report.reinitialised.append(k)
    report.unused = [k for k in src if k not in target]
    if not new:
        raise PixelsegError(f"{desc}: no tensor matches {type(getattr(model, 'net', model)).__name__}; was it saved from "
                            "the architecture you are training (same --model and --encoder)?")
    model.load_state_dict(new, strict=False)
    if info is not None and info.preprocessing.in_channels == _in_channels(model):
        # the loaded features were learned on inputs normalized this way: keep it for this run too
        model.mean_std = (list(info.preprocessing.mean), list(info.preprocessing.std))
    return report


def _in_channels(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
