"""The resumable state: counters, model, optimizer, scaler, EMA, RNG and the best confusion matrix, saved
atomically and durably into RUN/last.pt and read back so that a resumed run continues bit for bit."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from pixelseg.engine import guards
from pixelseg.measure.metrics import ConfusionMatrix


@dataclass
class State:
    epoch: int = 0                # epochs completed
    offset: int = 0               # samples already consumed in the current epoch (mid-epoch checkpoints)
    step: int = 0                 # batches trained on
    updates: int = 0              # optimizer steps (one every train.accumulate batches); drives the schedule
    elapsed: float = 0.0          # training + validation seconds, summed over resumes
    data_wait: float = 0.0        # of which the training loop waited for the data loader
    val_time: float = 0.0         # of which validation took
    best_miou: float = -1.0
    best_epoch: int = -1
    history: list = field(default_factory=list)
    semi: dict | None = None      # the unlabelled stream's position and thresholds (engine/semi.py); None: not used

    def share_waiting(self) -> float:
        """Share of the training time (validation excluded) spent waiting for data."""
        return self.data_wait / max(self.elapsed - self.val_time, 1e-9)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
            "python": list(random.getstate()[1])}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(("MT19937", s["numpy"].numpy().astype(np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(s["python"]), None))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def save_last(run, model, optimizer, scaler, ema, state: State, best_cm: ConfusionMatrix | None) -> None:
    """RUN/last.pt, after checking that no weight went NaN/inf (a broken state is never saved)."""
    guards.check_finite_weights(model, run.state_path, state.step)
    run.save_state({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "state": dict(state.__dict__), "rng": rng_state(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "best_cm": torch.from_numpy(best_cm.matrix) if best_cm is not None else None})


def restore(saved: dict, model, optimizer, scaler, ema, state: State, num_classes: int, ignore_index: int,
            device) -> ConfusionMatrix | None:
    """Load last.pt's content into the freshly built training objects; returns the best epoch's matrix."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if "scaler" in saved:
        scaler.load_state_dict(saved["scaler"])
    if ema is not None and saved.get("ema") is not None:
        ema.load_state_dict(saved["ema"])
    if "rng" in saved:
        set_rng_state(saved["rng"])
    state.__dict__.update(State(**saved["state"]).__dict__)
    if "updates" not in saved["state"]:     # saved before accumulation existed: one update per batch
        state.updates = state.step
    if saved.get("best_cm") is None:
        return None
    best_cm = ConfusionMatrix(num_classes, ignore_index)
    best_cm._mat = saved["best_cm"].to(device)
    return best_cm
