r"""The NAS-Bench-201 weight-sharing supernet on :class:`goldnas_fast.nn.DAGCell`.

Skeleton as the official search nets (``docs/method/nasbench201.md`` §1.4): stem (3x3 conv, BN), ``N`` cells at
``C``, a ``ResNetBasicBlock`` reduction, ``N`` cells at ``2C``, a reduction, ``N`` cells at ``4C``,
then BN + ReLU, global average pooling and a linear classifier. Stem, reductions and head use affine
BN with running statistics, in the search nets too.

All ``3N`` cells share **one** topology: one architecture parameter per (edge, op) *pair*, used by
every cell, while each cell has its own operator weights. Node ``t`` of every cell is

.. math:: x_t = \sum_{(s \to t,\ o)\ \mathrm{alive}} w_{(s \to t, o)}\; o(x_s)

with the gates ``w`` of the chosen rule:

* ``gate='sigmoid'`` (GOLD-NAS on NB201, ``docs/method/goldnas.md`` §9): candidates ``skip_connect``,
  ``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3`` (24 pairs), ``alpha`` of shape ``(24,)``,
  initialized to 0, :math:`w = \sigma(\alpha)`.
* ``gate='softmax'`` (DARTS, ``docs/method/nasbench201.md`` §1.6): all 5 ops including ``none`` (30 pairs),
  ``alpha = 1e-3 * randn(6, 5)``, :math:`w = \mathrm{softmax}(\alpha, -1)` per edge. The ``none`` op
  outputs zeros, so it is never computed: its pairs are permanently dead in the cells' masks and it
  acts only through the softmax denominator (the same values and gradients as ``x.mul(0.)``).

Pairs are ordered edge by edge (``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``), op by op, which is the
flattening order of ``alpha`` (:attr:`SearchNetwork.pairs`).

Search-time cell ops follow the official search nets: ``nor_conv_kxk`` = ReLU -> Conv (with bias,
since ``bias = not affine``) -> BN without affine parameters (batch statistics by default:
``track_running_stats=False``, as NATS-Bench's ``search-cell.py``); ``skip_connect`` and
``avg_pool_3x3`` are the fused primitives :class:`~goldnas_fast.nn.Identity` and
:class:`~goldnas_fast.nn.AvgPool3x3`, applied inside ``node_sum`` by the fused backend.
"""
from __future__ import annotations

import torch
from torch import nn

from goldnas_fast.nb201.arch import EDGES, OPS, format_arch
from goldnas_fast.nb201.blocks import Head, ReLUConvBN, ResNetBasicBlock, Stem, Zero
from goldnas_fast.nb201.cost import NUM_STAGES, fixed_flops_m, op_flops_m, stage_channels
from goldnas_fast.nn import AvgPool3x3, DAGCell, Edge, Identity
from goldnas_fast.nn.supernet import Supernet, check_modes

__all__ = ["SearchNetwork", "GATES", "SIGMOID_OPS", "SOFTMAX_OPS"]

GATES = ("sigmoid", "softmax")
SIGMOID_OPS: tuple[str, ...] = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""Candidates per edge with sigmoid gates (GOLD-NAS): ``none`` is what an edge with no survivor becomes."""
SOFTMAX_OPS: tuple[str, ...] = OPS
"""Candidates per edge with softmax gates (DARTS): all 5 NAS-Bench-201 ops, ``none`` included."""


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"SearchNetwork: {name} must be an int >= {minimum}, got {value!r}")
    return value


def _search_op(name: str, C: int, track_running_stats: bool) -> nn.Module:
    """A stride-1 ``C -> C`` cell candidate as in the official search nets (BN ``affine=False``)."""
    if name == "none":
        return Zero()  # never run: its pairs are dead in every cell
    if name == "skip_connect":
        return Identity()
    if name == "avg_pool_3x3":
        return AvgPool3x3()
    k = 1 if name == "nor_conv_1x1" else 3
    return ReLUConvBN(C, C, k, 1, k // 2, 1, affine=False, track_running_stats=track_running_stats)


class SearchNetwork(Supernet):
    """The NAS-Bench-201 supernet (module docstring); ``forward(x)`` returns logits.

    Args:
        C: stem width (16 in NAS-Bench-201); stages have ``C, 2C, 4C`` channels.
        N: cells per stage (5 in NAS-Bench-201).
        num_classes: classifier outputs (10 / 100 / 120).
        gate: ``'sigmoid'`` (GOLD-NAS, 24 pairs) or ``'softmax'`` (DARTS, 30 pairs incl. ``none``).
        backend: ``'fused'`` (``node_sum``) or ``'reference'`` (eager ``sum(w * op(x))``); also settable
            later through :attr:`backend`.
        lean: recompute operator activations in backward (:class:`~goldnas_fast.nn.DAGCell` ``lean``);
            also settable later through :attr:`lean`.
        track_running_stats: BN of the cell convs keeps running statistics (default False: batch
            statistics in train and eval mode).
        input_size: image side the FLOPs are counted at (32 for CIFAR, 16 for ImageNet16-120); a
            multiple of 4. ``forward`` accepts any multiple of 4.

    Raises:
        ValueError: an argument of the wrong type or out of range (named in the message).
    """

    def __init__(self, C: int = 16, N: int = 5, num_classes: int = 10, gate: str = "sigmoid",
                 backend: str = "fused", lean: bool = False, track_running_stats: bool = False,
                 input_size: int = 32) -> None:
        super().__init__()
        C, N, num_classes = _check_int("C", C), _check_int("N", N), _check_int("num_classes", num_classes)
        if gate not in GATES:
            raise ValueError(f"SearchNetwork: gate must be one of {GATES}, got {gate!r}")
        check_modes("SearchNetwork", backend=backend, lean=lean)
        if not isinstance(track_running_stats, bool):
            raise ValueError(f"SearchNetwork: track_running_stats must be a bool, got {track_running_stats!r}")
        _check_int("input_size", input_size, 4)
        if input_size % 4:
            raise ValueError(f"SearchNetwork: input_size must be a multiple of 4 (two stride-2 reductions), "
                             f"got {input_size}")
        self.C, self.N, self.num_classes, self.gate, self.input_size = C, N, num_classes, gate, input_size
        self.op_names: tuple[str, ...] = SIGMOID_OPS if gate == "sigmoid" else SOFTMAX_OPS
        self.pairs: list[tuple[int, str]] = [(e, op) for e in range(len(EDGES)) for op in self.op_names]
        # dead forever: 'none' is never computed (softmax gates only)
        self._never = [op == "none" for _, op in self.pairs]

        widths = stage_channels(C)
        self.stem = Stem(C)
        cells: list[nn.Module] = []
        for stage, width in enumerate(widths):
            if stage > 0:
                cells.append(ResNetBasicBlock(widths[stage - 1], width, stride=2))
            for _ in range(N):
                edges = [Edge(s, t, tuple((op, _search_op(op, width, track_running_stats)) for op in self.op_names))
                         for t, s in EDGES]
                cells.append(DAGCell(1, edges, output="last", backend=backend, lean=lean))
        self.cells = nn.ModuleList(cells)
        self.head = Head(widths[-1], num_classes)

        if gate == "sigmoid":
            self.alpha = nn.Parameter(torch.zeros(len(self.pairs)))
        else:
            self.alpha = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(self.op_names)))
        self.set_alive([True] * len(self.pairs))

    # ----------------------------------------------------------------- structure
    def search_cells(self) -> list[DAGCell]:
        """The ``3N`` searchable cells, in network order."""
        return [m for m in self.cells if isinstance(m, DAGCell)]

    def pair_node(self) -> list[int]:
        """The node (1, 2 or 3) each pair enters; one topology is shared by all cells."""
        return [EDGES[edge][0] for edge, _ in self.pairs]

    def pair_edge(self) -> list[int]:
        """The edge (0..5, :data:`~goldnas_fast.nb201.arch.EDGES` order) each pair lies on."""
        return [edge for edge, _ in self.pairs]

    # ----------------------------------------------------------------- gates
    def gate_values(self) -> torch.Tensor:
        r"""The gate of every pair, flattened in :attr:`pairs` order (differentiable).

        :math:`\sigma(\alpha)` for sigmoid gates; :math:`\mathrm{softmax}(\alpha, -1)` flattened for softmax
        gates (the ``none`` entries included, although those pairs are never computed).
        """
        if self.gate == "sigmoid":
            return torch.sigmoid(self.alpha)
        return torch.softmax(self.alpha, dim=-1).flatten()

    def _apply_alive(self, alive: list[bool]) -> list[bool]:
        """Entries for ``none`` pairs (softmax gates) are ignored: those pairs stay dead."""
        alive = [a and not never for a, never in zip(alive, self._never)]
        for node in (1, 2, 3):
            if not any(a for a, (e, _) in zip(alive, self.pairs) if EDGES[e][0] == node):
                raise ValueError(f"SearchNetwork.set_alive: node {node} would have no surviving input pair "
                                 "('none' does not count); keep at least one per node")
        for cell in self.search_cells():
            cell.set_alive(alive)
        return alive

    # ----------------------------------------------------------------- architecture and costs
    def arch_string(self) -> str:
        """The discrete NAS-Bench-201 architecture the gates select.

        Sigmoid gates: per edge, the surviving op with the largest gate (first of equal maxima), ``none``
        where no op survives. Softmax gates: per edge, the argmax of ``alpha`` over the 5 ops, ``none``
        included (AutoDL ``genotype()``); pruned ops are not eligible (without pruning this is the plain
        argmax).
        """
        alpha = self.alpha.detach().to("cpu", torch.float64).flatten().tolist()
        ops = []
        for e in range(len(EDGES)):
            best, best_val = "none", None
            for p, (edge, op) in enumerate(self.pairs):
                eligible = self._alive[p] or (self.gate == "softmax" and op == "none")
                if edge == e and eligible and (best_val is None or alpha[p] > best_val):
                    best, best_val = op, alpha[p]
            ops.append(best)
        return format_arch(ops)

    def pair_flops_m(self) -> list[float]:
        """FLOPs (M) each pair adds to the discrete network, summed over all ``3N`` cells.

        Benchmark counting rule (``docs/method/nasbench201.md`` §1.5, evaluation net: bias-free convs):
        ``N * sum_s k^2 C_s^2 h_s^2`` for ``nor_conv_kxk``, 0 for ``none``, ``skip_connect`` and
        ``avg_pool_3x3``. ``fixed_flops_m() + sum(kept pairs)`` is the arch's official FLOPs.
        """
        return [self.N * sum(op_flops_m(op, s, self.input_size, C=self.C) for s in range(NUM_STAGES))
                for _, op in self.pairs]

    def fixed_flops_m(self) -> float:
        """FLOPs (M) of the stem conv, both reduction blocks and the classifier (benchmark rule)."""
        return fixed_flops_m(self.num_classes, self.input_size, C=self.C)

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of images ``x`` of shape ``(B, 3, H, H)``, ``H`` a multiple of 4."""
        weights = self.gate_values()
        x = self.stem(x)
        for cell in self.cells:
            x = cell([x], weights) if isinstance(cell, DAGCell) else cell(x)
        return self.head(x)

    def extra_repr(self) -> str:
        return f"C={self.C}, N={self.N}, num_classes={self.num_classes}, gate={self.gate!r}"
