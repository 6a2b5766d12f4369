"""Data-parallel SAE training under ``torchrun``: the process group, and which process does what.

``torchrun --nproc-per-node N -m interp sae train CONFIG`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their environment.
:func:`data_parallel` joins them into a :mod:`torch.distributed` process group (NCCL on CUDA, one GPU
per process by ``LOCAL_RANK``; gloo on CPU) for the length of a training run. Every process builds
the same model, token rows and activation store and reads its own equal part of each global batch
(:meth:`interp.sae.store.ActivationStore.batches`); rank 0 alone builds the disk cache first (the
others then open it), writes the run and its checkpoints, and evaluates at the end. Launched without
``torchrun``, the group is a single process and nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place in the training job."""

    rank: int
    world: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` (a small JSON-like value such as a run id), on every process."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def launched_world() -> int:
    """The number of processes ``torchrun`` started (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextmanager
def data_parallel(device: torch.device) -> Iterator[Group]:
    """The process group of a ``torchrun`` launch (or a group of one), torn down afterwards."""
    world = launched_world()
    if world == 1:
        yield Group(0, 1, device)
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Group(dist.get_rank(), dist.get_world_size(), device)
    finally:
        if started:
            dist.destroy_process_group()
