"""Data-parallel search on ``torch.distributed``: process group, DDP wrapping, rank-0-only output.

Launched by ``torchrun``, every process holds the whole supernet, sees its own shard of each global
batch and averages the gradients of the weights *and the gates* through DistributedDataParallel (the
gates are parameters of the network, so DDP reduces them with the weights). Every rank then applies
the same averaged gradient to the same parameters and stays bitwise identical to rank 0; what the
search decides per epoch (pruning, lambda, the recorded architecture) is computed from state that is
broadcast from rank 0, so it is identical on every rank by construction.

Pruning and DDP: pruned operators' parameters are frozen (``requires_grad=False``) and the search
rebuilds the wrapper after each pruning event, so they leave the reducer. Parameters that stay
trainable but no longer reach the loss (e.g. a NAS-Bench-201 node whose outgoing edges were all pruned,
or a cell input no surviving pair reads) are handled by ``static_graph=True``: DDP traces the graph
once, in the first iteration after each rebuild, instead of searching it every step as
``find_unused_parameters=True`` would.

BatchNorm: every rank normalizes by the statistics of its own shard, as with any DDP training. A
K-process run with global batch ``B`` is therefore the same computation as one process that feeds the
``B`` images in ``K`` separately normalized chunks of ``B / K``, not as one process with BatchNorm over
all ``B`` (``torch.nn.SyncBatchNorm`` would give that, but it runs on GPUs only and costs one
collective per BatchNorm layer per step).

Failures: collectives time out after ``GOLDNAS_DIST_TIMEOUT`` seconds (default 300); a rank that
raises ends its process and ``torchrun`` stops the others.
"""
from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from goldnas_fast.devices import parse_device
from goldnas_fast.errors import UserError

__all__ = ["Context", "init", "timeout", "TIMEOUT_ENV", "DEFAULT_TIMEOUT_S"]

TIMEOUT_ENV = "GOLDNAS_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0


def timeout() -> datetime.timedelta:
    """The collective timeout: ``GOLDNAS_DIST_TIMEOUT`` seconds (a positive number), else 300 s."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise UserError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


def _ddp_buffer_kwargs() -> dict[str, bool]:
    # Buffers (BatchNorm running statistics) are synchronized from rank 0 when the wrapper is built, but
    # not before every forward: the search never uses them, so per-step broadcasts would be pure cost.
    # torch >= 2.13 names this forward_sync_buffers; broadcast_buffers is deprecated there.
    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return type(obj)((k, _to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


@dataclass
class Context:
    """Where this process runs and how it talks to the others (a single process when not distributed).

    All collective methods are no-ops in a single process, so the search code calls them unconditionally.
    Every rank must call them in the same order.
    """

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
            if self.device.type == "cuda":  # NCCL is told its device instead of guessing one from the rank
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (tensors arrive on the CPU, whatever device rank 0 had them on)."""
        if not self.distributed:
            return obj
        box = [_to_cpu(obj) if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (in place), e.g. for epoch statistics."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def all_reduce_mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mean over ranks (in place), e.g. a gradient computed outside DDP."""
        if self.distributed:
            dist.all_reduce(tensor)
            tensor.div_(self.world_size)
        return tensor

    def broadcast_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's values in ``tensor`` on every rank (in place)."""
        if self.distributed:
            dist.broadcast(tensor, src=0)
        return tensor

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module to call in training: a fresh DDP wrapper over the currently trainable parameters.

        Building it is a collective (rank 0's parameters and buffers are broadcast), so every rank must
        build it at the same point. Call it again after freezing or unfreezing parameters.
        """
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, static_graph=True, **_ddp_buffer_kwargs())

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise UserError(f"environment variable {name}={os.environ[name]!r}: expected an integer") from None


def init(distributed: bool, device: str) -> Context:
    """Joins the process group that ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    ``distributed=False`` under a launcher that started several processes (``WORLD_SIZE > 1``) is taken as
    ``True``: independent copies of one search writing into one run directory are never what is meant.
    The backend is NCCL for CUDA devices (each process on ``cuda:LOCAL_RANK``) and gloo for the CPU.

    Raises:
        UserError: a bad ``device``, ``distributed`` without a launcher, or a bad ``GOLDNAS_DIST_TIMEOUT``.
    """
    dev = parse_device(device)
    if not distributed and "WORLD_SIZE" in os.environ and _env_int("WORLD_SIZE") > 1:
        distributed = True
    if not distributed:
        return Context(device=dev)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise UserError("--distributed needs torchrun (RANK and WORLD_SIZE are not set); "
                        "e.g. torchrun --nproc-per-node 2 -m goldnas_fast.cli search --distributed ...")
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
    if not 0 <= rank < world:
        raise UserError(f"RANK={rank} must lie in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    wait = timeout()
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK={local}, but this node has only {torch.cuda.device_count()} CUDA devices; "
                            "start at most that many processes per node (--nproc-per-node)")
        dev = torch.device("cuda", local)  # one GPU per process: a cuda:i in --device is replaced
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=wait)
    return Context(device=dev, rank=rank, world_size=world, local_rank=local, _owns_group=True)
