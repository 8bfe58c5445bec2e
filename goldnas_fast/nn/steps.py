"""How a training loop runs one SGD step: eagerly, or replayed from a captured CUDA graph.

The trainer (:mod:`goldnas_fast.train.trainer`) and the supernet searches (GOLD-NAS's one-level loop,
DARTS) run their steps through these runners. Both runners take the same
``step_fn(x, y) -> (loss, *stats)`` (forward under the run's precision, the loss, and any statistics the
loop sums, e.g. the number of correct predictions, all on the device) and do
``zero_grad(set_to_none) -> backward -> before_step (clipping) -> optimizer.step()`` for each optimizer
in order, so on one device they compute the same values.

:class:`GraphedSteps` replays one captured step (:class:`~goldnas_fast.nn.graphed.GraphedTrainStep`)
between events that change the graph:

* a learning-rate (or other optimizer hyper-parameter) change: a Python scalar baked into the captured
  optimizer kernels. GraphedTrainStep notices the change and re-captures by itself (one capture and
  ``warmup`` eager steps per change). A learning rate held in a device tensor would avoid that, but
  then SGD multiplies by a tensor instead of a scalar, and the run would no longer be bit for bit
  the eager run.
* anything else the loop announces with :meth:`GraphedSteps.invalidate`: a pruning event (other
  modules run), a new drop-path probability, any Python number the forward reads. A number that
  changes often (GOLD-NAS's lambda) is better held in a device tensor updated in place; then it needs
  no re-capture.

Evaluation between epochs runs eagerly and leaves the graph valid (it replays the training-mode
kernels it recorded). A batch whose shape differs from the captured one (the last, smaller batch of an
epoch) runs eagerly.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import torch

from goldnas_fast.nn.graphed import GraphBackend, GraphedTrainStep

__all__ = ["EagerSteps", "GraphedSteps", "StepFn", "StepRunner"]

StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
Optimizers = Union[torch.optim.Optimizer, Sequence[torch.optim.Optimizer]]


def _as_list(optimizers: Optimizers) -> list[torch.optim.Optimizer]:
    return [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else list(optimizers)


class EagerSteps:
    """One eager step per call.

    Args:
        step_fn: ``step_fn(x, y) -> (loss, *stats)``, device tensors, no host synchronization.
        optimizer: one optimizer, or several stepped in the given order.
        before_step: called between backward and the optimizer steps (e.g. gradient clipping).
    """

    captures = 0  #: never captures

    def __init__(self, step_fn: StepFn, optimizer: Optimizers, before_step: Callable[[], Any] | None = None) -> None:
        self.step_fn, self.before_step = step_fn, before_step
        self.optimizers = _as_list(optimizer)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Trains on ``(x, y)``; returns ``(loss, *stats)`` as device tensors (the loss detached)."""
        loss, *stats = self.step_fn(x, y)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.before_step is not None:
            self.before_step()
        for opt in self.optimizers:
            opt.step()
        return (loss.detach(), *stats)

    def invalidate(self) -> None:
        """Nothing is cached."""


class GraphedSteps:
    """Steps replayed from a captured graph; eager for batches of another shape.

    Args:
        step_fn, optimizer, before_step: as for :class:`EagerSteps`.
        graphs: capture backend (default: CUDA graphs; :class:`~goldnas_fast.nn.graphed.EagerGraphs` in tests).
        warmup: eager steps before each capture.
    """

    def __init__(self, step_fn: StepFn, optimizer: Optimizers, before_step: Callable[[], Any] | None = None,
                 graphs: GraphBackend | None = None, warmup: int = 3) -> None:
        self.eager = EagerSteps(step_fn, optimizer, before_step)
        self.graphed = GraphedTrainStep(step_fn, self.eager.optimizers, before_step=before_step, warmup=warmup,
                                        graphs=graphs)
        self._shape: tuple[torch.Size, torch.Size] | None = None

    @property
    def captures(self) -> int:
        """Captures so far (the first, plus one per invalidation or learning-rate change)."""
        return self.graphed.captures

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Trains on ``(x, y)``; returns ``(loss, *stats)`` as device tensors (no host synchronization)."""
        if self._shape is None:
            self._shape = (x.shape, y.shape)
        if (x.shape, y.shape) != self._shape:
            return self.eager(x, y)
        return tuple(self.graphed(x, y))

    def invalidate(self) -> None:
        """The next steps re-capture (after ``warmup`` eager ones)."""
        self.graphed.invalidate()


StepRunner = Union[EagerSteps, GraphedSteps]
"""Either runner: ``runner(x, y) -> (loss, *stats)`` and ``runner.invalidate()``."""
