"""The torch.distributed collectives behind ConfusionMatrix.all_reduce: the total summed, the per-image
matrices gathered. Every rank must call them, a rank that saw no image too (it sends zeros / nothing)."""
from __future__ import annotations

import torch


def is_distributed() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def _reduce_device(home: torch.device) -> torch.device:
    import torch.distributed as dist
    # NCCL only reduces CUDA tensors; gloo takes them where they are
    return torch.device("cuda", torch.cuda.current_device()) if "nccl" in str(dist.get_backend()) else home


def sum_matrix(mat: torch.Tensor | None, k: int, home: torch.device) -> torch.Tensor:
    """The K x K int64 sum of every rank's `mat` (None: this rank counted nothing), on `home`."""
    import torch.distributed as dist
    dev = _reduce_device(home)
    out = torch.zeros(k, k, dtype=torch.int64, device=dev) if mat is None else mat.to(dev)
    dist.all_reduce(out)
    return out.to(home)


def gather_strided(images: list[torch.Tensor], k: int, home: torch.device) -> list[torch.Tensor]:
    """Every rank's per-image matrices on every rank, interleaved back into the split's order: pixelseg
    shards a split by stride (rank r holds images r, r + world, ...). all_gather needs equal shapes, so each
    rank pads its share to the longest."""
    import torch.distributed as dist
    dev, world = _reduce_device(home), dist.get_world_size()
    mine = torch.cat([m.to(dev) for m in images]) if images else torch.zeros(0, k, k, dtype=torch.int64, device=dev)
    counts = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([len(mine)], dtype=torch.int64, device=dev))
    n = [int(c) for c in counts]
    padded = torch.zeros(max(n), k, k, dtype=torch.int64, device=dev)
    padded[:len(mine)] = mine
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    order = [parts[r][j] for j in range(max(n)) for r in range(world) if j < n[r]]
    return [torch.stack(order).to(home)] if order else []
