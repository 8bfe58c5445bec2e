"""``DAGCell``: a weight-sharing DAG cell whose nodes are fused, pruning-aware gated sums.

Every space in goldnas_fast (NAS-Bench-201, the GOLD-NAS space) is assembled from this block, and users
can build their own cells from their own operator sets with it.
"""
from __future__ import annotations

import contextlib
from functools import partial
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from goldnas_fast.nn.primitives import fused_kind
from goldnas_fast.nn.relu_body import relu_body, run_body
from goldnas_fast.ops.node_sum import Kind

__all__ = ["Edge", "DAGCell", "BACKENDS", "MEMORY_FORMATS", "prefers_channels_last", "match_cell_weights_layout"]

BACKENDS = ("fused", "reference")
MEMORY_FORMATS = ("auto", "preserve")


@dataclass(frozen=True)
class Edge:
    """An edge ``source -> target`` of a cell with its candidate operators (name, module)."""

    source: int
    target: int
    ops: tuple[tuple[str, nn.Module], ...]


@dataclass(frozen=True)
class _Entry:
    pair: int  # index of the (edge, op) pair in the cell, also its gate index
    source: int
    module: str  # key into DAGCell.candidates
    kind: Kind | None  # a fused primitive is applied inside node_sum instead of being run


class DAGCell(nn.Module):
    r"""A cell DAG: node :math:`j = \sum_{(e, o)\ \mathrm{alive},\ e \to j} w_{(e,o)}\, o(x_{\mathrm{src}(e)})`.

    Nodes ``0 .. num_inputs-1`` are the cell inputs; the other nodes are computed in order, each from
    the surviving (edge, operator) *pairs* that enter it. Pairs are numbered edge by edge, operator by
    operator (``pairs`` lists them), and pair ``p`` is gated by ``weights[p]`` in :meth:`forward`.

    ``backend='fused'`` evaluates each node with one :func:`goldnas_fast.ops.node_sum` call: parameter-free
    primitives (:class:`~goldnas_fast.nn.Identity`, :class:`~goldnas_fast.nn.AvgPool3x3`,
    :class:`~goldnas_fast.nn.MaxPool3x3`) are applied inside the kernel and store nothing for backward;
    other operators run as modules and their outputs enter as identity entries; operators that begin
    with a ReLU (:func:`~goldnas_fast.nn.relu_body`) share one ReLU per source node, and their non-affine
    BatchNorms save their output, which ``node_sum`` keeps anyway, instead of their input. ``backend='reference'``
    is the eager DARTS-style ``sum(w * op(x))``. Both skip pruned pairs, so pruning removes their cost.

    ``lean=True`` keeps only the node tensors for backward and recomputes every surviving operator in
    backward (activation checkpointing per node), for large spaces on small GPUs; the recomputation
    leaves BatchNorm running statistics as the forward left them.

    ``memory_format='auto'`` lets the fused backend run 4-D inputs in channels_last (NHWC) where that
    layout is the fast one (:func:`prefers_channels_last`): float32/bfloat16 on the CPU, where oneDNN's
    convolutions need no layout reorders, and float32/bfloat16/float16 on CUDA, where cuDNN's convolutions
    and BatchNorm over few channels avoid NCHW transposes and reductions; ``node_sum`` pools NHWC planes
    in place (``BENCHMARKS.md`` has the measurements). Values agree up to rounding (NHWC kernels sum in
    another order, as for the reference network in channels_last). The cell's output is then
    channels_last (a user head that ``view``\ s it must ``reshape``).
    ``'preserve'`` keeps the inputs' layout. The reference backend always preserves it.

    Args:
        num_inputs: number of input nodes (1 for NAS-Bench-201, 2 for DARTS-style cells).
        edges: the edges with their candidates; targets must be intermediate nodes and sources earlier.
        output: ``'last'`` (the last node, NAS-Bench-201) or ``'concat'`` (channel concatenation of all
            intermediate nodes, DARTS).
        backend: ``'fused'`` or ``'reference'``.
        lean: recompute operators in backward instead of storing their activations.
        memory_format: ``'auto'`` or ``'preserve'``, see above; changeable via the attribute.
    """

    def __init__(self, num_inputs: int, edges: Sequence[Edge], output: str = "last", backend: str = "fused",
                 lean: bool = False, memory_format: str = "auto") -> None:
        super().__init__()
        if num_inputs < 1:
            raise ValueError(f"DAGCell: num_inputs must be >= 1, got {num_inputs}")
        if output not in ("last", "concat"):
            raise ValueError(f"DAGCell: output must be 'last' or 'concat', got {output!r}")
        if not edges:
            raise ValueError("DAGCell: edges must not be empty")
        self.num_inputs = num_inputs
        self.num_nodes = max(e.target for e in edges) + 1
        self.output = output
        self.lean = lean
        self.backend = backend
        self.memory_format = memory_format
        self.candidates = nn.ModuleDict()
        entries: list[_Entry] = []
        self.pairs: list[tuple[int, int, str]] = []  # (edge index, source, op name) per pair
        for ei, edge in enumerate(edges):
            if not num_inputs <= edge.target < self.num_nodes or not 0 <= edge.source < edge.target:
                raise ValueError(f"DAGCell: edge {ei} ({edge.source}->{edge.target}) must go from an earlier "
                                 f"node to an intermediate node (inputs are 0..{num_inputs - 1})")
            if not edge.ops:
                raise ValueError(f"DAGCell: edge {ei} ({edge.source}->{edge.target}) has no candidate ops")
            for name, module in edge.ops:
                key = f"{edge.target}<-{edge.source}:{name}"
                if key in self.candidates:
                    raise ValueError(f"DAGCell: operator {name!r} appears twice on edge {edge.source}->{edge.target}")
                self.candidates[key] = module
                entries.append(_Entry(len(entries), edge.source, key, fused_kind(module)))
                self.pairs.append((ei, edge.source, name))
        self._entries = entries
        self._node_entries: list[list[_Entry]] = []
        self.set_alive([True] * len(entries))

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"DAGCell: backend must be one of {BACKENDS}, got {value!r}")
        self._backend = value

    @property
    def memory_format(self) -> str:
        return self._memory_format

    @memory_format.setter
    def memory_format(self, value: str) -> None:
        if value not in MEMORY_FORMATS:
            raise ValueError(f"DAGCell: memory_format must be one of {MEMORY_FORMATS}, got {value!r}")
        self._memory_format = value

    @property
    def num_pairs(self) -> int:
        return len(self._entries)

    @property
    def alive(self) -> list[bool]:
        """Which pairs are computed (host-side list, changed only by :meth:`set_alive`)."""
        return list(self._alive)

    def set_alive(self, alive: Sequence[bool]) -> None:
        """Sets the surviving pairs and rebuilds the per-node execution plan (host side, no device sync).

        Operators of pruned pairs stop being run and their parameters are frozen (``requires_grad=False``)
        so that optimizers and DistributedDataParallel ignore them.
        """
        alive = [bool(a) for a in alive]
        if len(alive) != self.num_pairs:
            raise ValueError(f"DAGCell: alive has {len(alive)} entries, expected {self.num_pairs} (one per pair)")
        self._alive = alive
        plan: list[list[_Entry]] = [[] for _ in range(self.num_nodes)]
        for entry, keep in zip(self._entries, alive):
            if keep:
                plan[self._target(entry)].append(entry)
        self._node_entries = plan
        used = {e.module for e, keep in zip(self._entries, alive) if keep}
        for key, module in self.candidates.items():
            for p in module.parameters():
                p.requires_grad_(key in used)

    def _target(self, entry: _Entry) -> int:
        return int(entry.module.split("<-", 1)[0])

    def forward(self, inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """Runs the cell on its input node tensors with one gate value per pair in ``weights``."""
        if len(inputs) != self.num_inputs:
            raise ValueError(f"DAGCell: expected {self.num_inputs} input tensors, got {len(inputs)}")
        if weights.dim() != 1 or weights.numel() != self.num_pairs:
            raise ValueError(f"DAGCell: weights must be 1-D with {self.num_pairs} entries (one per pair), "
                             f"got shape {tuple(weights.shape)}")
        nodes = list(inputs)
        if self._backend == "fused" and self._memory_format == "auto":
            nodes = [_preferred_layout(x) for x in nodes]
        relus: dict[int, torch.Tensor] = {}  # ReLU of a source node, shared by its ReLU-led operators
        for j in range(self.num_inputs, self.num_nodes):
            entries = self._node_entries[j]
            if not entries:
                raise RuntimeError(f"DAGCell: node {j} has no surviving input pair; pruning must keep at "
                                   "least one input per node")
            sources = [nodes[s] for s in sorted({e.source for e in entries})]
            if self.lean and torch.is_grad_enabled() and self.training:
                # Compiled, the recomputation is functional and touches no running statistics (and dynamo
                # cannot trace a context_fn); eager, it needs the node's BatchNorm statistics frozen.
                kw = {} if torch.compiler.is_compiling() else {"context_fn": partial(self._recompute_context, j)}
                nodes.append(checkpoint(self._node, j, weights, *sources, use_reentrant=False, **kw))
            else:
                # without autograd, sharing across nodes would only keep ReLU outputs alive longer
                nodes.append(self._node(j, weights, *sources, relus=relus if torch.is_grad_enabled() else None))
        if self.output == "last":
            return nodes[-1]
        return torch.cat(nodes[self.num_inputs:], dim=1)

    def _recompute_context(self, j: int) -> tuple[contextlib.AbstractContextManager,
                                                   contextlib.AbstractContextManager]:
        return contextlib.nullcontext(), self._batch_norm_stats_frozen(j)

    @contextlib.contextmanager
    def _batch_norm_stats_frozen(self, j: int) -> Iterator[None]:
        # The backward recomputation must normalize exactly as the forward did (same batch statistics,
        # same saved tensors) without moving the running statistics a second time: a zero momentum keeps
        # them, and without a batch counter BatchNorm neither increments it nor reads it (no device op).
        norms = {id(m): m for e in self._node_entries[j] for m in self.candidates[e.module].modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats}
        saved = [(m, m.momentum, m._buffers.get("num_batches_tracked")) for m in norms.values()]
        for m, _, _ in saved:
            m.momentum = 0.0
            m._buffers["num_batches_tracked"] = None
        try:
            yield
        finally:
            for m, momentum, count in saved:
                m.momentum = momentum
                m._buffers["num_batches_tracked"] = count

    def _node(self, j: int, weights: torch.Tensor, *sources: torch.Tensor,
              relus: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        entries = self._node_entries[j]
        by_source = dict(zip(sorted({e.source for e in entries}), sources))
        if self._backend == "reference":
            out = None
            for e in entries:
                term = weights[e.pair].to(sources[0].dtype) * self.candidates[e.module](by_source[e.source])
                out = term if out is None else out + term
            return out
        from goldnas_fast.ops import node_sum  # the fused op lives in the compiled extension

        relus = {} if relus is None else relus
        tensors, kinds, gates = [], [], []
        for e in entries:
            x = by_source[e.source]
            if e.kind is None:
                op = self.candidates[e.module]
                body = relu_body(op)
                if body is None:
                    tensors.append(op(x))
                else:
                    if e.source not in relus:
                        relus[e.source] = torch.relu(x)
                    tensors.append(run_body(body, relus[e.source]))
                kinds.append(Kind.IDENTITY)
            else:
                tensors.append(x)
                kinds.append(e.kind)
            gates.append(e.pair)
        return node_sum(tensors, kinds, gates, weights)


_CHANNELS_LAST_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    # oneDNN's NHWC convolutions are its fast path for these; other CPU dtypes take slow kernels either way
    "cpu": (torch.float32, torch.bfloat16),
    # cuDNN's NHWC kernels avoid the nchwToNhwc transposes around every convolution, and BatchNorm over
    # few channels runs its NHWC kernels instead of the slow NCHW reduction (docs/gpu-baseline.md)
    "cuda": (torch.float32, torch.bfloat16, torch.float16),
}


def prefers_channels_last(device_type: str, dtype: torch.dtype, dim: int) -> bool:
    """Whether ``memory_format='auto'`` runs a ``dim``-D tensor of ``dtype`` on ``device_type`` channels_last."""
    return dim == 4 and dtype in _CHANNELS_LAST_DTYPES.get(device_type, ())


def _preferred_layout(x: torch.Tensor) -> torch.Tensor:
    if prefers_channels_last(x.device.type, x.dtype, x.dim()):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def match_cell_weights_layout(module: nn.Module, device_type: str) -> int:
    """Stores the 4-D weights of every fused ``memory_format='auto'`` :class:`DAGCell` in ``module`` in
    channels_last where the cells run channels_last on ``device_type`` and that device is CUDA; returns how
    many cells it changed.

    cuDNN takes a convolution's weight in its input's layout and would otherwise reorder an NCHW weight
    at every call and the weight gradient back at every backward. On the CPU nothing changes: oneDNN
    reorders weights into its own blocked format either way, and CPU runs stay as they were, bit for bit.
    Call it before the optimizers are built (their buffers then follow the weights' layout).
    """
    if device_type != "cuda":
        return 0
    changed = 0
    for cell in module.modules():
        if not isinstance(cell, DAGCell) or cell.backend != "fused" or cell.memory_format != "auto":
            continue
        params = [p for p in cell.parameters() if p.dim() == 4]
        if params and all(prefers_channels_last(device_type, p.dtype, 4) for p in params):
            cell.to(memory_format=torch.channels_last)
            changed += 1
    return changed
