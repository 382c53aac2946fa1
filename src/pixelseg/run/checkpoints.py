"""Checkpoints, written atomically: a kill at any moment leaves the previous complete file in place.

Weights for users are safetensors; the resumable state (optimizer moments, counters) is a torch file holding
only tensors and plain Python values, read back with weights_only=True (no pickle code runs). The run folder
(pixelseg.run.folder.RunFolder) decides where they go; these functions only know how.
"""
from __future__ import annotations

from pathlib import Path

from pixelseg.errors import PixelsegError
from pixelseg.fileio import atomic_path


def save_weights(path: str | Path, model) -> None:
    from safetensors.torch import save_file
    state, seen = {}, set()
    for k, v in model.state_dict().items():
        v = v.detach().contiguous().cpu()
        # a module registered under two names (tied weights) gives two keys over one storage; safetensors
        # refuses aliased tensors, and every key must load back under strict loading: store a copy
        if v.numel() and v.untyped_storage().data_ptr() in seen:
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        state[k] = v
    with atomic_path(path, durable=True) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})


def save_state(path: str | Path, state: dict) -> None:
    import torch
    with atomic_path(path, durable=True) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> dict:
    import torch
    path = Path(path)
    if not path.is_file():
        raise PixelsegError(f"{path}: no resumable state; the run never finished a step — start it again without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PixelsegError(f"{path}: resumable state is damaged ({type(e).__name__}); start a new run") from None
