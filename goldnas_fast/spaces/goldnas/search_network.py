r"""The GOLD-NAS super-network: DARTS macro skeleton, independent cells, sigmoid gate per (cell, edge, op).

Skeleton (``docs/method/goldnas.md`` §1.1): stem (3x3 conv to 3C, BN); ``layers`` cells with reductions at
``L // 3`` and ``2L // 3`` (channels double); each cell pre-processes its inputs (cells k-2, k-1) with
1x1 ReLU-Conv-BN (FactorizedReduce after a reduction), has 4 intermediate nodes and 14 edges, and
concatenates the 4 nodes; global average pooling and a linear classifier; an auxiliary head after
cell ``2L // 3``. Every (cell, edge, op) *pair* has its own architecture parameter :math:`\alpha`
(0 at init) and gate :math:`\sigma(\alpha)`; node :math:`j` of cell :math:`c` is

.. math:: x_j = \sum_{(p \to j, o)\ \mathrm{alive}} \sigma(\alpha_{c, p \to j, o})\, o(x_p)

(raw sigmoid, not normalized, ``docs/method/goldnas.md`` §2.1). Pairs are flattened cell by cell, then edge by edge
(DARTS order: node 2 from 0, 1; node 3 from 0, 1, 2; ...), then operator by operator (``pairs``).

Cells are :class:`goldnas_fast.nn.DAGCell`: ``backend='fused'`` sums each node with one ``node_sum`` call
and ``'reference'`` is the eager ``sum(w * op(x))``; both skip pruned pairs (``set_alive``), which stop
costing time and memory. ``lean=True`` recomputes operator activations in backward. ``none`` pairs
(when ``none`` is in ``ops``) contribute zeros and get a zero gate gradient, so they are not run unless a
node has no other survivor (it is then exactly zero).

Search-time operators follow DARTS (BN ``affine=False``); in this space no operator is a bare fused
primitive: ``skip_connect`` (stride 1) is identity + BN and pools are followed by BN, so all enter
``node_sum`` as materialized outputs (see :mod:`goldnas_fast.spaces.goldnas.ops`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from goldnas_fast.nn import DAGCell, Edge
from goldnas_fast.nn.supernet import Supernet, check_modes
from goldnas_fast.spaces.goldnas.genotype import NUM_INPUTS, NUM_NODES, Genotype, reduction_cells
from goldnas_fast.spaces.goldnas.heads import AuxiliaryHead, check_int, make_stem
from goldnas_fast.spaces.goldnas.ops import (DEFAULT_OPS, FactorizedReduce, ReLUConvBN, check_op_names, make_op,
                                             op_flops)

__all__ = ["GoldNasSearchNetwork", "SearchCell", "CELL_EDGES", "count_architectures"]

CELL_EDGES: tuple[tuple[int, int], ...] = tuple(
    (s, t) for t in range(NUM_INPUTS, NUM_INPUTS + NUM_NODES) for s in range(t))
"""The 14 (source, target) edges of a cell, in flatten order."""


def count_architectures(layers: int = 14, num_ops: int = 2) -> int:
    r"""Number of discrete networks: :math:`\left(\prod_{j=2}^{5} (2^{\,n_{ops}\, j} - 1)\right)^{L}`.

    Node ``j`` has ``j`` incoming edges, each with ``num_ops`` on/off switches, and keeps at least one
    (``docs/method/goldnas.md`` §1.4: ``246,517,425`` per cell with 2 ops; ``>10^117`` for 14 cells).
    """
    check_int("layers", layers)
    check_int("num_ops", num_ops)
    per_cell = 1
    for j in range(NUM_INPUTS, NUM_INPUTS + NUM_NODES):
        per_cell *= 2 ** (num_ops * j) - 1
    return per_cell ** layers


class SearchCell(nn.Module):
    """One super-network cell: input pre-processing and a :class:`~goldnas_fast.nn.DAGCell` of 14 edges."""

    def __init__(self, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool, ops: Sequence[str],
                 backend: str, lean: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0: nn.Module = (FactorizedReduce(C_pp, C, affine=False) if reduction_prev
                                       else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        edges = []
        for s, t in CELL_EDGES:
            stride = 2 if reduction and s < NUM_INPUTS else 1
            edges.append(Edge(s, t, tuple((name, make_op(name, C, stride, affine=False, search=True)) for name in ops)))
        self.dag = DAGCell(NUM_INPUTS, edges, output="concat", backend=backend, lean=lean)
        # pair -> module, in DAGCell's pair order (plain list: the modules are registered in ``dag``)
        self.pair_modules: list[nn.Module] = [module for edge in edges for _, module in edge.ops]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.dag([self.preprocess0(s0), self.preprocess1(s1)], weights)


class GoldNasSearchNetwork(Supernet):
    """The GOLD-NAS super-network (module docstring) with per-pair gates, costs and pruning masks.

    Args:
        C: initial channels (36 in the unofficial code, 16 for small GPUs); must be even.
        layers: number of cells (14 in the code, 20 per the arXiv v1 count); at least 3.
        num_classes: classifier outputs.
        ops: candidate operators on every edge, names from :data:`~goldnas_fast.spaces.goldnas.ops.OPS`.
        auxiliary: build the auxiliary head after cell ``2L // 3`` (its logits are returned in training).
        backend: ``'fused'`` (``node_sum``) or ``'reference'`` (eager); changeable later via ``backend``.
        lean: recompute operator activations in backward (DAGCell ``lean``); changeable via ``lean``.
        input_size: image side used for the FLOPs counts (a multiple of 4); ``forward`` accepts any
            multiple of 4.
    """

    def __init__(self, C: int = 36, layers: int = 14, num_classes: int = 10, ops: Sequence[str] = DEFAULT_OPS,
                 auxiliary: bool = True, backend: str = "fused", lean: bool = False, input_size: int = 32,
                 stem_multiplier: int = 3) -> None:
        super().__init__()
        check_int("C", C, 2)
        if C % 2:
            raise ValueError(f"C must be even (FactorizedReduce splits channels in halves), got {C}")
        reductions = reduction_cells(layers)
        check_int("num_classes", num_classes)
        check_int("input_size", input_size, 4)
        if input_size % 4:
            raise ValueError(f"input_size must be a multiple of 4 (two stride-2 reductions), got {input_size}")
        check_int("stem_multiplier", stem_multiplier)
        check_modes("GoldNasSearchNetwork", backend=backend, lean=lean)
        self.ops = check_op_names(ops)
        self.C, self.layers, self.num_classes, self.input_size = C, layers, num_classes, input_size
        self.reductions = reductions
        self.aux_cell = 2 * layers // 3

        C_stem = stem_multiplier * C
        self.stem = make_stem(C_stem)
        self._fixed_macs = 27 * C_stem * input_size * input_size
        self._pair_macs: list[int] = []
        C_pp, C_p, C_cur = C_stem, C_stem, C
        H_pp = H_p = input_size  # sides of the cell's two inputs
        reduction_prev = False
        self.cells = nn.ModuleList()
        C_aux = 0
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_cur *= 2
            cell = SearchCell(C_pp, C_p, C_cur, reduction, reduction_prev, self.ops, backend, lean)
            self.cells.append(cell)
            # pre-processing: FactorizedReduce = two 1x1 convs C_pp -> C/2 at the (halved) side of s1
            self._fixed_macs += C_pp * C_cur * H_p * H_p if reduction_prev else C_pp * C_cur * H_pp * H_pp
            self._fixed_macs += C_p * C_cur * H_p * H_p
            H_out = H_p // 2 if reduction else H_p
            for s, _ in CELL_EDGES:
                stride = 2 if reduction and s < NUM_INPUTS else 1
                H_in = H_p if s < NUM_INPUTS else H_out
                self._pair_macs += [op_flops(name, C_cur, stride, H_in, H_in) for name in self.ops]
            reduction_prev = reduction
            C_pp, C_p = C_p, NUM_NODES * C_cur
            H_pp, H_p = H_p, H_out
            if i == self.aux_cell:
                C_aux = C_p
        self._fixed_macs += C_p * num_classes
        self.auxiliary_head = AuxiliaryHead(C_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

        # (cell, edge, op name) of every pair, in flatten order (the order of ``alpha``)
        self.pairs: list[tuple[int, int, str]] = [
            (c, e, name) for c in range(layers) for e in range(len(CELL_EDGES)) for name in self.ops]
        self._per_cell = len(CELL_EDGES) * len(self.ops)
        self.alpha = nn.Parameter(torch.zeros(len(self.pairs)))
        self.register_buffer("_flops_m", torch.tensor(self._pair_macs, dtype=torch.float64) * 1e-6, persistent=False)
        self.register_buffer("_alive_t", torch.ones(len(self.pairs), dtype=torch.bool), persistent=False)
        self.set_alive([True] * len(self.pairs))

    # ----------------------------------------------------------------- structure
    def search_cells(self) -> list[DAGCell]:
        """The ``layers`` cells' DAGs, in network order."""
        return [cell.dag for cell in self.cells]

    def pair_node(self) -> list[int]:
        """Global id of the node each pair enters: ``cell * 4 + (target - 2)`` (gates are normalized per node)."""
        return [c * NUM_NODES + CELL_EDGES[e][1] - NUM_INPUTS for c, e, _ in self.pairs]

    def pair_edge(self) -> list[int]:
        """Global id of the edge each pair lies on: ``cell * 14 + edge``."""
        return [c * len(CELL_EDGES) + e for c, e, _ in self.pairs]

    # ----------------------------------------------------------------- gates
    def gate_values(self) -> torch.Tensor:
        r"""The gates :math:`\sigma(\alpha)`, one per pair (differentiable)."""
        return torch.sigmoid(self.alpha)

    def _apply_alive(self, alive: list[bool]) -> list[bool]:
        """Raises ``ValueError`` naming the cell and node that would keep no surviving input pair."""
        live_nodes = {n for n, a in zip(self.pair_node(), alive) if a}
        for node in range(self.layers * NUM_NODES):
            if node not in live_nodes:
                raise ValueError(f"set_alive: cell {node // NUM_NODES}, node {node % NUM_NODES + NUM_INPUTS} would "
                                 "have no surviving input pair; keep at least one per node")
        # 'none' adds zeros (and gets a zero gate gradient either way), so it is only run where a node has
        # nothing else left, to make that node an exact zero
        computed = [a and name != "none" for a, (_, _, name) in zip(alive, self.pairs)]
        nodes = self.pair_node()
        fed = {n for n, a in zip(nodes, computed) if a}
        computed = [comp or (a and nodes[p] not in fed) for p, (a, comp) in enumerate(zip(alive, computed))]
        for c, cell in enumerate(self.cells):
            cell.dag.set_alive(computed[c * self._per_cell:(c + 1) * self._per_cell])
        self._alive_t.copy_(torch.tensor(alive, dtype=torch.bool))
        return alive

    # ----------------------------------------------------------------- costs
    def pair_flops_m(self) -> list[float]:
        r"""FLOPs (M multiply-accumulates per image) of every pair at ``input_size`` and the cell's width.

        Computed from the real layer shapes (:func:`~goldnas_fast.spaces.goldnas.ops.op_flops`). At
        ``input_size=32`` the ``sep_conv_3x3`` and stride-2 ``skip_connect`` values equal the unofficial
        code's formulas (``docs/method/goldnas.md`` §3.4: 3.32 / 2.99 / 2.82 M for sep_conv_3x3 at C = 36 / 72 / 144),
        which hard-code a 32x32 map and therefore are wrong at other resolutions (e.g. 4x too small
        at 64x64); §3.4 also gives every other operator 0, whereas ``sep_conv_5x5`` and ``dil_conv_*``
        are counted here.
        """
        return [m * 1e-6 for m in self._pair_macs]

    def pair_params(self) -> list[int]:
        """Number of weights of each pair's operator (search modules: BN without affine parameters)."""
        return [sum(p.numel() for p in m.parameters()) for cell in self.cells for m in cell.pair_modules]

    def fixed_flops_m(self) -> float:
        """FLOPs (M MACs per image) of all that is not searched: stem, pre-processing 1x1 convs, classifier.

        BN, pooling and the auxiliary head (training only) are not counted. At C = 36, 14 cells and 32x32
        this is 163.57 M (it scales with ``input_size`` squared), 2.45 M below the unofficial code's
        hard-coded ``base_flops = 166.02`` (``docs/method/goldnas.md`` §3.4, whose independent count gives "about
        164 M"). With the 613.45 M of all 392 pairs the full super-network costs 777.03 M (§3.4: about
        779 M with 166.02).
        """
        return self._fixed_macs * 1e-6

    def fixed_params(self) -> int:
        """Number of weights outside the searched pairs (alpha and the auxiliary head excluded)."""
        pair = {id(p) for cell in self.cells for m in cell.pair_modules for p in m.parameters()}
        aux = {id(p) for p in self.auxiliary_head.parameters()} if self.auxiliary_head is not None else set()
        return sum(p.numel() for p in self.weight_parameters() if id(p) not in pair and id(p) not in aux)

    def expected_flops_m(self) -> torch.Tensor:
        r"""Differentiable expected cost :math:`F_{fixed} + \sum_{p\ \mathrm{alive}} \sigma(\alpha_p)\,F_p` (M)."""
        sig = self.gate_values()
        return self.fixed_flops_m() + (sig * (self._flops_m.to(sig.dtype) * self._alive_t)).sum()

    def discrete_flops_m(self) -> float:
        """Cost of the current discrete network (fixed + surviving pairs), in M MACs per image.

        This is the additive model the search uses (what the super-network computes with its 4-node
        concatenations). The re-training network of :meth:`genotype` concatenates only its used nodes, so
        its pre-processing convs are narrower; :func:`goldnas_fast.spaces.goldnas.network_cost` counts it
        exactly.
        """
        return self.fixed_flops_m() + sum(m for m, a in zip(self._pair_macs, self._alive) if a) * 1e-6

    # ----------------------------------------------------------------- architecture
    def genotype(self) -> Genotype:
        """Surviving (op, source, target) triples per cell.

        ``none`` pairs are left out. A node whose survivors are all ``none`` is identically zero in the
        super-network, so the triples reading it are left out too (an operator of a zero tensor is zero
        here: every operator ends in batch-normalization, pooling or is linear).
        """
        cells: list[list[tuple[str, int, int]]] = [[] for _ in range(self.layers)]
        for (c, e, name), keep in zip(self.pairs, self._alive):
            if keep and name != "none":
                s, t = CELL_EDGES[e]
                cells[c].append((name, s, t))
        for c, triples in enumerate(cells):
            live = set(range(NUM_INPUTS))
            kept = []
            for t in range(NUM_INPUTS, NUM_INPUTS + NUM_NODES):  # targets in order: sources are settled first
                into = [tr for tr in triples if tr[2] == t and tr[1] in live]
                if into:
                    live.add(t)
                kept += into
            if not kept:
                raise RuntimeError(f"genotype: cell {c} has only 'none' operators left; its output is zero")
            cells[c] = kept
        return Genotype(cells=cells, reductions=self.reductions)

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns ``(logits, aux_logits)``; ``aux_logits`` is None unless training with the auxiliary head."""
        if x.dim() != 4 or x.shape[1] != self.stem[0].in_channels:
            raise ValueError(f"GoldNasSearchNetwork: expected input (N, {self.stem[0].in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"GoldNasSearchNetwork: image sides must be multiples of 4, got {tuple(x.shape[-2:])}")
        gates = self.gate_values()
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, gates[i * self._per_cell:(i + 1) * self._per_cell])
            if i == self.aux_cell and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, aux

    def extra_repr(self) -> str:
        return (f"C={self.C}, layers={self.layers}, ops={list(self.ops)}, pairs={self.num_pairs}, "
                f"backend={self.backend!r}, lean={self.lean}")
