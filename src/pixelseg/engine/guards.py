"""Fault guards: a NaN/inf stops the run before anything broken is saved, SIGTERM/SIGINT stop it at the end
of a step with its state saved, and a rank that loses a peer saves what it safely can."""
from __future__ import annotations

import contextlib
import signal

import torch
import torch.distributed as dist

from pixelseg.errors import PixelsegError


class NonFiniteLoss(PixelsegError):
    pass


class StopFlag:
    """SIGTERM/SIGINT ask the loop to stop at the end of the current step and save; a second SIGINT aborts."""

    def __init__(self):
        self.reason = None
        self._old = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (e.g. inside a server): no signal handling
            pass
        return self

    def _handle(self, signum, frame):
        if self.reason and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def non_finite(what: str, step: int, epoch: int, state_path, lr: float, rank: int | None):
    """Stop on a NaN/inf before the update: last.pt keeps the last good state, nothing broken is written."""
    where = f" on rank {rank}" if rank is not None else ""
    raise NonFiniteLoss(f"{what} at step {step + 1} (epoch {epoch + 1}){where}; stopped without saving — "
                        f"{state_path} holds the last good state. Lower --lr (now {lr:g}), add "
                        "--clip-grad 1.0, or check the data")


def check_finite_weights(model: torch.nn.Module, state_path, step: int) -> None:
    tensors = {k: v for k, v in model.state_dict().items() if v.is_floating_point() and v.numel()}
    # one fused kernel and one host sync: a NaN or inf anywhere in a tensor makes its norm non-finite
    norms = torch.stack(torch._foreach_norm([v.float() for v in tensors.values()])) if tensors else torch.zeros(0)
    if bool(torch.isfinite(norms).all()):
        return
    # the slow exact look only now (a norm also overflows for huge finite weights)
    bad = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise NonFiniteLoss(f"weights became NaN/inf ({bad[0]}{' and others' if len(bad) > 1 else ''}) by step "
                            f"{step}; stopped without saving — {state_path} holds the last good state. "
                            "Lower --lr or add --clip-grad 1.0")


def is_peer_failure(e: BaseException) -> bool:
    """A collective failed because another rank went away (gloo/NCCL report it as a RuntimeError)."""
    if isinstance(e, dist.DistError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "peer", "socket",
                                                                    "broken pipe", "timed out"))


@contextlib.contextmanager
def save_on_lost_peer(d, save_last, between_steps):
    """When another rank dies mid-step, rank 0 still holds a consistent state if no gradient is
    half-accumulated (the failed step never reached the optimizer): save it, so the kill costs at most
    one step instead of everything since the last checkpoint."""
    try:
        yield
    except Exception as e:
        if d.enabled and d.is_main and is_peer_failure(e) and between_steps():
            with contextlib.suppress(Exception):
                save_last()
        raise
