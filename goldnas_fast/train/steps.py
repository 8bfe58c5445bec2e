"""How the trainer runs one SGD step: eagerly, or replayed from a captured CUDA graph.

Both runners take the same ``step_fn(x, y) -> (loss, correct)`` (forward under the run's precision, the
loss, and the number of correct top-1 predictions, all on the device) and do
``zero_grad(set_to_none) -> backward -> before_step (clipping) -> optimizer.step()``, so on one device
they compute the same values.

:class:`GraphedSteps` replays one captured step (:class:`~goldnas_fast.nn.graphed.GraphedTrainStep`)
between events that change the graph. The learning rate is a Python scalar baked into the captured SGD
kernels, and the trainer changes it once per epoch: GraphedTrainStep notices the change and re-captures
(one capture and ``warmup`` eager steps per epoch). A learning rate held in a device tensor would avoid
that, but then SGD multiplies by a tensor instead of a scalar, and the run would no longer be bit
for bit the eager run; a capture per epoch costs a few eager steps out of ~100. The other Python
number the captured forward bakes in, a new drop-path probability, is announced by the trainer with
:meth:`GraphedSteps.invalidate`. Evaluation between epochs runs eagerly and leaves the graph valid
(it replays the training-mode kernels it recorded). A batch whose shape differs from the captured one (the
last, smaller batch of an epoch) runs eagerly.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from goldnas_fast.nn.graphed import GraphBackend, GraphedTrainStep

__all__ = ["EagerSteps", "GraphedSteps", "StepFn"]

StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class EagerSteps:
    """One eager step per call."""

    captures = 0  #: never captures

    def __init__(self, step_fn: StepFn, optimizer: torch.optim.Optimizer,
                 before_step: Callable[[], Any] | None = None) -> None:
        self.step_fn, self.optimizer, self.before_step = step_fn, optimizer, before_step

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trains on ``(x, y)``; returns ``(loss, correct)`` as device tensors."""
        loss, correct = self.step_fn(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.before_step is not None:
            self.before_step()
        self.optimizer.step()
        return loss.detach(), correct

    def invalidate(self) -> None:
        """Nothing is cached."""


class GraphedSteps:
    """Steps replayed from a captured graph; eager for batches of another shape.

    Args:
        step_fn, optimizer, before_step: as for :class:`EagerSteps`.
        graphs: capture backend (default: CUDA graphs; :class:`~goldnas_fast.nn.graphed.EagerGraphs` in tests).
        warmup: eager steps before each capture.
    """

    def __init__(self, step_fn: StepFn, optimizer: torch.optim.Optimizer,
                 before_step: Callable[[], Any] | None = None, graphs: GraphBackend | None = None,
                 warmup: int = 3) -> None:
        self.eager = EagerSteps(step_fn, optimizer, before_step)
        self.graphed = GraphedTrainStep(step_fn, [optimizer], before_step=before_step, warmup=warmup, graphs=graphs)
        self._shape: tuple[torch.Size, torch.Size] | None = None

    @property
    def captures(self) -> int:
        """Captures so far (the first, plus one per invalidation or learning-rate change)."""
        return self.graphed.captures

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trains on ``(x, y)``; returns ``(loss, correct)`` as device tensors (no host synchronization)."""
        if self._shape is None:
            self._shape = (x.shape, y.shape)
        if (x.shape, y.shape) != self._shape:
            return self.eager(x, y)
        loss, correct = self.graphed(x, y)
        return loss, correct

    def invalidate(self) -> None:
        """The next steps re-capture (after ``warmup`` eager ones)."""
        self.graphed.invalidate()
