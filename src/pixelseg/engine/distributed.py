"""Distributed helpers on torch.distributed, for runs launched with torchrun.

    torchrun --nproc-per-node 4 -m pixelseg train --data D --batch-size 32 ...

torchrun sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; `setup` reads them, starts the
process group (NCCL when the ranks train on GPUs, gloo on the CPU) and pins each rank to its GPU.
Without torchrun (WORLD_SIZE unset or 1) everything here is a no-op and the trainer runs as one process.

Collectives must be called by every rank in the same order, so every decision that depends on
something only one rank knows (its clock, a signal it received, an error it hit reading the run
folder) goes through `agree`/`main_first` before anyone acts on it — otherwise the ranks diverge and
the job hangs instead of ending.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from pixelseg import torchrun
from pixelseg.errors import PixelsegError

# A rank waits this long for the others (a straggler, a slow first-epoch check of a big dataset) before
# the job is declared broken; a killed rank is noticed at once (its sockets close), not after this.
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    group: bool = False       # a process group was joined (torchrun, even with one process)

    @property
    def enabled(self) -> bool:
        return self.world > 1 or self.group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> tuple[Dist, str]:
    """Join the process group torchrun prepared. `device` is the resolved training device ("cpu",
    "cuda:N"); under torchrun each rank takes cuda:LOCAL_RANK instead. Returns (Dist, device).

    A one-process torchrun joins its group too (DDP, SyncBN and the NCCL/gloo collectives all run), so
    the distributed path can be checked on a machine with a single GPU."""
    rank, world, local = torchrun.world()
    if world <= 1 and not torchrun.launched_by_torchrun():
        return Dist(), device
    cuda = device.startswith("cuda")
    if cuda:
        if local >= torch.cuda.device_count():
            raise PixelsegError(f"rank {rank} has LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) are "
                                "visible; start at most one process per GPU (--nproc-per-node)")
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT,
                                device_id=torch.device(device) if cuda else None)
    return Dist(rank, world, local, backend, group=True), device


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def _reduce_device(d: Dist) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if d.backend == "nccl" else torch.device("cpu")


def agree(d: Dist, flags: list[float], op: str = "max") -> list[float]:
    """The element-wise max (or sum) of `flags` over all ranks: one small all-reduce, so every rank takes
    the same branch (stop, save, validate) even when only one of them saw the reason."""
    if not d.enabled:
        return list(flags)
    t = torch.tensor(flags, dtype=torch.float64, device=_reduce_device(d))
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t.tolist()


def broadcast(d: Dist, obj):
    """Rank 0's Python object on every rank (pickled over the process group: between our own ranks,
    never from a file)."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_reduce_device(d) if d.backend == "nccl" else None)
    return box[0]


def main_first(d: Dist, fn, *args, **kwargs):
    """Run fn on rank 0 only and hand its result to every rank. A PixelsegError there (unwritable run
    folder, bad mask) is raised on every rank, so the job stops with one message instead of hanging."""
    result, error = None, None
    if d.is_main:
        try:
            result = fn(*args, **kwargs)
        except PixelsegError as e:
            error = str(e)
    result, error = broadcast(d, (result, error))
    if error is not None:
        raise PixelsegError(error)
    return result


def lost_peer_message(d: Dist, e: BaseException, run_dir: Path | None, step: int | None) -> str:
    """What a rank says when a collective fails because another rank died (killed, out of memory)."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    first = re.sub(r"^\[[^\]]*\]\s*", "", first)[:160]     # drop gloo's "[.../pair.cc:561]" source location
    where = f" at step {step}" if step is not None else ""
    from pixelseg.run.folder import RunFolder
    resume = (f"; the last saved state is in {RunFolder(run_dir).state_path} — continue with "
              f"`torchrun ... -m pixelseg train --out {run_dir} --resume`") if run_dir else ""
    return f"rank {d.rank} of {d.world}: another rank stopped{where} ({first}){resume}"
