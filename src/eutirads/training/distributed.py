"""Training past one process: `torchrun --nproc_per_node N -m eutirads train ...`.

torchrun starts N processes and tells each its RANK, WORLD_SIZE and LOCAL_RANK (several
nodes: its `--nnodes`, `--node_rank`, `--rdzv_*` options). Here:

- `session()` joins the process group (gloo on CPU, nccl on CUDA, one GPU per local rank)
  and leaves it at the end; without torchrun's variables everything is one process and
  every function below is a no-op;
- `shard(indices)` is the distributed sampler: every rank draws the same seeded shuffle of
  the training set, cuts each batch into WORLD_SIZE strided parts and takes its own, so the
  global batch and the learning-rate schedule are those of the config (`batch_size` is the
  global batch), and every sample is seen once per epoch across the ranks;
- `wrap_top(split)` puts the trained part of the model (top stages and heads) into
  DistributedDataParallel, which averages its gradients across ranks and broadcasts batch
  norm buffers from rank 0, so all ranks hold the same weights and reach the same
  validation metrics and early-stopping decisions;
- `is_main()`: only rank 0 writes the run folder and shows progress bars.

The frozen-feature cache is built by every rank for the whole training set (the same
seeded passes), in its own memory: caching costs the same time as one process and N times
the memory; the epochs over the cache are what is split. Checkpoints hold the plain
model's state dict, as in one process.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
from torch import nn

__all__ = ["session", "active", "rank", "world_size", "is_main", "shard", "wrap_top",
           "local_device", "barrier"]


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if active() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def local_device() -> torch.device | None:
    """This rank's GPU under torchrun with CUDA (None otherwise)."""
    if active() and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return None


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Join torchrun's process group for the duration (a no-op without torchrun)."""
    if not _launched() or active():
        yield
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend=backend)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's strided part of one batch of sample indices."""
    if not active():
        return indices
    return indices[rank()::world_size()]


class _Top(nn.Module):
    """The part of the model one phase trains, as a module DDP can wrap."""

    def __init__(self, split) -> None:
        super().__init__()
        self.model = split.model  # DDP reduces the parameters that require gradients
        object.__setattr__(self, "_split", split)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return type(self._split).top_forward(self._split, x)


def wrap_top(split) -> None:
    """Route `split.top_forward` through DistributedDataParallel (no-op in one process)."""
    if not active():
        return
    device = local_device()
    ddp = nn.parallel.DistributedDataParallel(
        _Top(split), device_ids=[device.index] if device is not None else None,
        # A descriptor head without labels in a batch contributes no gradient.
        find_unused_parameters=True)
    split.top_forward = ddp
