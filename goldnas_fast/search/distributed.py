"""Data-parallel search on ``torch.distributed``: process group, DDP wrapping, rank-0-only output.

Launched by ``torchrun``, every process holds the whole supernet, sees its own shard of each batch and
averages the gradients of weights *and gates* through DistributedDataParallel, so all ranks keep
identical gates. Pruning decisions are then computed from gates broadcast by rank 0, so they are
identical on every rank by construction. After a pruning event the DDP wrapper is rebuilt: pruned
operators' parameters are frozen and simply leave the reducer, with no ``find_unused_parameters``.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from goldnas_fast.errors import UserError

__all__ = ["Context", "init"]

TIMEOUT = datetime.timedelta(seconds=int(os.environ.get("GOLDNAS_DIST_TIMEOUT", "300")))


@dataclass
class Context:
    """Where this process runs and how it talks to the others (a single process when not distributed)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    _owns_group: bool = field(default=False, repr=False)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self._owns_group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (in place), for epoch statistics."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def broadcast_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.broadcast(tensor, src=0)
        return tensor

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module to call in training: a fresh DDP wrapper over the currently trainable parameters."""
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()


def init(distributed: bool, device: str) -> Context:
    """Joins the process group that ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a device (expected cpu or cuda[:i])") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but no CUDA device is available")
    if not distributed:
        return Context(device=dev)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise UserError("--distributed needs torchrun (RANK and WORLD_SIZE are not set); "
                        "e.g. torchrun --nproc-per-node 2 -m goldnas_fast.cli search --distributed ...")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    return Context(device=dev, rank=rank, world_size=world, local_rank=local, _owns_group=True)
