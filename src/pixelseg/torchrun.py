"""Where this process sits in a torchrun launch, read from the environment torchrun sets, in one place for
training (engine/distributed.py), prediction jobs (inference/jobs.py) and the CLI's exit."""
from __future__ import annotations

import os

from pixelseg.errors import PixelsegError


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        raise PixelsegError("RANK/WORLD_SIZE/LOCAL_RANK are not integers; launch with torchrun") from None


def local_world(world: int) -> int:
    """How many ranks share this machine (LOCAL_WORLD_SIZE; `world` when torchrun does not say)."""
    try:
        return int(os.environ.get("LOCAL_WORLD_SIZE", world)) if world > 1 else 1
    except ValueError:
        raise PixelsegError("LOCAL_WORLD_SIZE is not an integer; launch with torchrun") from None


def launched_by_torchrun() -> bool:
    """torchrun (torch.distributed.run) sets these for every process it starts, one process included."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ("MASTER_ADDR" in os.environ and "WORLD_SIZE" in os.environ)
