"""How a supernet search runs its steps: precision, CUDA graphs and the device flags of the run.

One :class:`StepOptions` per search (from ``--precision`` and ``--cuda-graphs``). The searches build their
step runner with :meth:`StepOptions.runner` (:mod:`goldnas_fast.nn.steps`: eager, or one captured CUDA
graph replayed between re-captures), run each forward pass under :meth:`StepOptions.autocast`, and the
search loop runs every epoch inside :meth:`StepOptions.run_context` (the precision's global flags, and
``cudnn.benchmark`` on CUDA: a search's batch shape is static, every loader drops its last partial batch).

The gates' logits (``alpha``) and their regularizer are computed outside autocast: under ``bf16`` the
architecture parameters, their gradients and their optimizer states stay float32, as the weights do.

CUDA graphs are off by default: they change no value (the CPU stand-in replays bit for bit what the
eager loop computes), but their speed-up on a search over real data has not been measured yet.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from goldnas_fast.errors import UserError
from goldnas_fast.nn.graphed import GraphBackend
from goldnas_fast.nn.steps import EagerSteps, GraphedSteps, StepFn, StepRunner
from goldnas_fast.precision import autocast, check_precision, precision

__all__ = ["StepOptions"]


@dataclass(frozen=True)
class StepOptions:
    """The numeric and launch options of a supernet search's steps.

    Attributes:
        precision: ``'fp32'``, ``'tf32'`` or ``'bf16'`` (:mod:`goldnas_fast.precision`).
        cuda_graphs: replay each step from a captured CUDA graph.
        graphs: the capture backend; ``None`` is CUDA graphs
            (:class:`~goldnas_fast.nn.graphed.EagerGraphs` stands in for them in tests without a GPU).
    """

    precision: str = "fp32"
    cuda_graphs: bool = False
    graphs: GraphBackend | None = None

    def __post_init__(self) -> None:
        check_precision(self.precision)

    @property
    def graphed(self) -> bool:
        """Whether steps are captured (CUDA graphs or their stand-in)."""
        return self.cuda_graphs or self.graphs is not None

    def check(self, device: torch.device, world_size: int = 1) -> None:
        """Refuses what cannot run.

        Raises:
            UserError: CUDA graphs without a CUDA device (and no stand-in), or with several processes
                (the DDP all-reduce and the explicit gate all-reduce are not captured).
        """
        if self.cuda_graphs and self.graphs is None and device.type != "cuda":
            raise UserError("--cuda-graphs needs --device cuda")
        if self.graphed and world_size > 1:
            raise UserError("--cuda-graphs runs one process; leave out --distributed or --cuda-graphs")

    def capturable(self, device: torch.device) -> bool:
        """Whether optimizers that keep host-side state (Adam) must be built ``capturable=True``."""
        return self.graphed and self.graphs is None and device.type == "cuda"

    def runner(self, step_fn: StepFn, optimizers: Sequence[torch.optim.Optimizer],
               before_step: Callable[[], Any] | None = None) -> StepRunner:
        """The step runner: :class:`~goldnas_fast.nn.steps.GraphedSteps` with graphs, else
        :class:`~goldnas_fast.nn.steps.EagerSteps`."""
        if self.graphed:
            return GraphedSteps(step_fn, list(optimizers), before_step, graphs=self.graphs)
        return EagerSteps(step_fn, list(optimizers), before_step)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        """The context of one forward pass (bfloat16 autocast under ``bf16``, nothing otherwise)."""
        return autocast(self.precision, device, graphed=self.graphed)

    def run_context(self, device: torch.device) -> contextlib.AbstractContextManager[None]:
        """The context of the whole run: the precision's global flags and, on CUDA, ``cudnn.benchmark``."""
        return precision(self.precision, device, cudnn_benchmark=device.type == "cuda")
