"""Whole-training-step CUDA graph capture for supernets (forward, backward, optimizer steps).

On a GPU a NAS-Bench-201 supernet step launches thousands of small kernels, so launch overhead, not
arithmetic, bounds it. :class:`GraphedTrainStep` records one full step once as a ``torch.cuda.CUDAGraph``
and replays it, following the "whole network capture" recipe of the PyTorch CUDA graphs docs: static
input and label buffers, warm-up iterations on a side stream, ``zero_grad(set_to_none=True)`` before
capture so that backward allocates the gradients from the graph's private pool, and ``optimizer.step()``
inside the capture.

What a captured step cannot see (re-capture with :meth:`GraphedTrainStep.invalidate`):

* **pruning** (``set_alive``) or any other change of which modules run, ``train()``/``eval()``,
  ``backend``/``lean`` switches: the graph replays the kernels it recorded;
* Python numbers read by ``loss_fn`` (e.g. a regularization weight): keep them in a tensor and update it
  in place instead, then no re-capture is needed.

Optimizer hyper-parameters (``lr``, ``momentum``, ``weight_decay``...) are baked into the captured kernels
as scalars; :meth:`GraphedTrainStep.step` compares them with their values at capture time and re-captures
by itself when one changed (a learning-rate schedule then costs one capture per change).

The alternative without manual buffers is ``torch.compile(step_fn, mode="reduce-overhead")`` (Inductor
with CUDA graph trees); it needs the fused ops' fake kernels and recompiles on every pruning event.

The CUDA calls (side stream, capture, replay) go through a :class:`GraphBackend`; :class:`CudaGraphs` is
the real one. :class:`EagerGraphs` is a stand-in that runs anywhere: a "capture" records the step without
running it and a "replay" runs it eagerly from the static buffers, with fresh gradients, which is what a
replayed graph computes. It lets the warm-up / capture / re-capture logic be tested without a GPU.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Union

import torch

__all__ = ["CudaGraphs", "EagerGraphs", "GraphBackend", "GraphedTrainStep"]

StepOutput = Union[torch.Tensor, tuple[torch.Tensor, ...]]


def _hyper_parameters(optimizers: Sequence[torch.optim.Optimizer]) -> list[tuple]:
    """The scalar settings of every parameter group (what a replay would keep using)."""
    snap = []
    for opt in optimizers:
        for group in opt.param_groups:
            snap.append(tuple(sorted((k, v) for k, v in group.items()
                                     if k != "params" and isinstance(v, (bool, int, float, tuple)))))
    return snap


class GraphBackend:
    """Where :class:`GraphedTrainStep` warms up, captures and replays (see :class:`CudaGraphs`)."""

    needs_cuda = True  #: whether the optimized parameters must live on a CUDA device

    def side_stream(self) -> contextlib.AbstractContextManager[Any]:
        """Context in which warm-up steps run (ordered after the caller's pending work and before its next)."""
        raise NotImplementedError

    def capture(self, body: Callable[[], StepOutput], reset: Callable[[], None]) -> Callable[[], StepOutput]:
        """Records ``body`` once (``reset()``, which drops the gradients, has just run); returns ``replay``,
        which runs the recorded step and returns ``body``'s outputs."""
        raise NotImplementedError


class CudaGraphs(GraphBackend):
    """The real backend: a side CUDA stream and ``torch.cuda.CUDAGraph`` capture and replay."""

    def __init__(self) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("GraphedTrainStep: CUDA graphs need a CUDA device and none is available; on the CPU "
                               "run the eager step (or torch.compile(mode='reduce-overhead') on a GPU)")
        self._stream = torch.cuda.Stream()

    @contextlib.contextmanager
    def side_stream(self) -> Iterator[None]:
        self._stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._stream):
            yield
        torch.cuda.current_stream().wait_stream(self._stream)

    def capture(self, body: Callable[[], StepOutput], reset: Callable[[], None]) -> Callable[[], StepOutput]:
        graph = torch.cuda.CUDAGraph()
        # the warm-up stream is reused for capture (lazily created library handles are per stream);
        # thread_local: DataLoader pin-memory threads may keep calling CUDA while we capture
        with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
            out = body()

        def replay() -> StepOutput:
            graph.replay()
            return out

        return replay


class EagerGraphs(GraphBackend):
    """Stand-in without CUDA: replay = zero the gradients (to ``None``) and run the step eagerly.

    Attributes:
        events: what happened, in order: ``'warmup'``, ``'capture'`` and ``'replay'``.
    """

    needs_cuda = False

    def __init__(self) -> None:
        self.events: list[str] = []

    @contextlib.contextmanager
    def side_stream(self) -> Iterator[None]:
        self.events.append("warmup")
        yield

    def capture(self, body: Callable[[], StepOutput], reset: Callable[[], None]) -> Callable[[], StepOutput]:
        self.events.append("capture")

        def replay() -> StepOutput:
            self.events.append("replay")
            reset()  # a captured backward writes the gradients afresh: it never accumulates
            return body()

        return replay


class GraphedTrainStep:
    """One training step (forward, backward, optional gradient hook, optimizer steps) replayed as a CUDA graph.

    Usage::

        net = SearchNetwork().cuda()
        opt_w = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        opt_a = torch.optim.SGD(net.arch_parameters(), lr=0.1)
        step = GraphedTrainStep(lambda x, y: F.cross_entropy(net(x), y), [opt_a, opt_w],
                                before_step=lambda: torch.nn.utils.clip_grad_norm_(net.weight_parameters(), 5))
        for x, y in loader:          # every batch must have the shape of the first (drop_last=True)
            loss = step(x, y)        # a fresh tensor; reading it syncs, so read it rarely
        net.set_alive(mask); step.invalidate()   # after every pruning event

    The first ``warmup`` calls (also after each :meth:`invalidate`) are ordinary eager steps on a side
    stream on the given batches (they create optimizer state and run lazy initialization, which capture
    does not allow); the next call captures the step and replays it, and later calls only copy the batch
    into the static buffers and replay. No batch is skipped or repeated.

    Args:
        loss_fn: ``loss_fn(images, labels)`` runs the forward pass and returns the scalar loss, or a tuple
            whose first element is the loss (further tensors, e.g. logits, are returned by :meth:`step`).
            It must not synchronize with the host (no ``.item()``, no data-dependent Python branches).
        optimizers: stepped in this order after backward. They must not need host syncs: ``SGD`` is fine;
            ``Adam``/``AdamW`` need ``capturable=True``.
        before_step: called between backward and the optimizer steps (e.g. ``clip_grad_norm_``, which does
            not sync unless ``error_if_nonfinite=True``).
        warmup: eager steps before each capture (>= 1; the PyTorch docs use 3, 11 with DDP).
        graphs: the capture backend (default :class:`CudaGraphs`; :class:`EagerGraphs` for tests without CUDA).

    Raises:
        RuntimeError: CUDA is not available or an optimized parameter is not on a CUDA device.
        ValueError: bad ``warmup``, an empty optimizer list, or an optimizer that is not capturable.
    """

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], StepOutput],
                 optimizers: Sequence[torch.optim.Optimizer], before_step: Callable[[], Any] | None = None,
                 warmup: int = 3, graphs: GraphBackend | None = None) -> None:
        graphs = CudaGraphs() if graphs is None else graphs
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"GraphedTrainStep: warmup must be an int >= 1, got {warmup!r}")
        optimizers = list(optimizers)
        if not optimizers:
            raise ValueError("GraphedTrainStep: optimizers must hold at least one optimizer")
        for i, opt in enumerate(optimizers):
            if not isinstance(opt, torch.optim.Optimizer):
                raise ValueError(f"GraphedTrainStep: optimizers[{i}] must be a torch.optim.Optimizer, "
                                 f"got {type(opt).__name__}")
            if opt.defaults.get("capturable") is False:
                raise ValueError(f"GraphedTrainStep: optimizers[{i}] ({type(opt).__name__}) must be created with "
                                 "capturable=True to be stepped inside a CUDA graph")
            for group in opt.param_groups:
                for p in group["params"]:
                    if graphs.needs_cuda and not p.is_cuda:
                        raise RuntimeError(f"GraphedTrainStep: optimizers[{i}] holds a parameter on {p.device}; "
                                           "move the model to the GPU before creating the optimizers")
        self.loss_fn, self.optimizers, self.before_step, self.warmup = loss_fn, optimizers, before_step, warmup
        self.graphs = graphs
        self._images: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._graph: Callable[[], StepOutput] | None = None
        self._hyper: list[tuple] = []
        self._eager_left = warmup
        self.captures = 0  #: number of captures so far (one per invalidation, plus the first)

    @property
    def captured(self) -> bool:
        """Whether the next :meth:`step` replays a graph."""
        return self._graph is not None

    def invalidate(self) -> None:
        """Drops the captured graph (call after pruning or any change of the computation).

        The next ``warmup`` steps run eagerly, then the step is captured again. Gradients are reset to
        ``None`` so that parameters frozen since the capture stop being updated from stale gradients.
        """
        self._graph = None
        self._eager_left = self.warmup
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        return self.step(images, labels)

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        """Trains on one batch; returns ``loss_fn``'s output (cloned: it stays valid after later steps)."""
        self._load(images, labels)
        if self._graph is not None and _hyper_parameters(self.optimizers) != self._hyper:
            self.invalidate()
        if self._eager_left > 0:
            self._eager_left -= 1
            return self._warmup_step()
        if self._graph is None:
            self._capture()
        return self._clone(self._graph())

    # ----------------------------------------------------------------- internals
    def _load(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        for name, t in (("images", images), ("labels", labels)):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"GraphedTrainStep.step: {name} must be a torch.Tensor, got {type(t).__name__}")
        if self._images is None:
            device = self.optimizers[0].param_groups[0]["params"][0].device
            self._images = torch.empty_like(images, device=device)
            self._labels = torch.empty_like(labels, device=device)
        for name, t, static in (("images", images, self._images), ("labels", labels, self._labels)):
            if t.shape != static.shape or t.dtype != static.dtype:
                raise ValueError(f"GraphedTrainStep.step: {name} has shape {tuple(t.shape)} and dtype {t.dtype}, but "
                                 f"the captured step expects {tuple(static.shape)} and {static.dtype} (use "
                                 "drop_last=True, or build a new GraphedTrainStep for another shape)")
        self._images.copy_(images, non_blocking=True)
        self._labels.copy_(labels, non_blocking=True)

    def _body(self) -> StepOutput:
        out = self.loss_fn(self._images, self._labels)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        if self.before_step is not None:
            self.before_step()
        for opt in self.optimizers:
            opt.step()
        return out

    def _warmup_step(self) -> StepOutput:
        self._zero_grad()
        with self.graphs.side_stream():
            out = self._body()
        # cloned on the caller's stream: the side stream's blocks are reused only after it waits on this one
        return self._clone(out)

    def _zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def _capture(self) -> None:
        self._zero_grad()  # backward then allocates .grad inside the graph's pool
        self._graph = self.graphs.capture(self._body, self._zero_grad)
        self._hyper = _hyper_parameters(self.optimizers)
        self.captures += 1

    @staticmethod
    def _clone(out: StepOutput) -> StepOutput:
        if isinstance(out, tuple):
            return tuple(t.detach().clone() for t in out)
        return out.detach().clone()
