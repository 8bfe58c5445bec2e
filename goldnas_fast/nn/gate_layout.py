"""How a supernet's gates are laid out (:meth:`Supernet.gate_layout <goldnas_fast.nn.supernet.Supernet.gate_layout>`),
as the GOLD-NAS controller and regularizer see them.

A supernet exposes a flat vector of gate logits ``alpha`` of shape ``(P,)``, one per *pair* (a candidate
operator on an edge, in one cell or shared). For each pair the controller needs the node it enters
(gates are normalized per node: ``w_o = sigma_o / S_j`` with ``S_j`` summed over every live pair entering
node ``j``, over all edges), the edge it lies on (for "at most one op per edge" stopping on NAS-Bench-201)
and the FLOPs it adds to the discrete network.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GateLayout", "require_layout"]


def _int_tuple(values: Sequence[Any], name: str) -> tuple[int, ...]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"GateLayout: {name}[{i}] must be an int, got {v!r}")
        if v < 0:
            raise ValueError(f"GateLayout: {name}[{i}] must be >= 0, got {v}")
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class GateLayout:
    """Per-pair structure of a supernet's gates, in the order of its flattened ``alpha``.

    Args:
        node: global id of the node each pair enters (ids need not be contiguous).
        edge: global id of the edge each pair lies on; every edge enters exactly one node.
        flops_m: FLOPs (M multiply-accumulates) each pair adds to the discrete network, ``>= 0``.
        fixed_flops_m: FLOPs of everything not searched (stem, pre-processing, head).
        names: optional human-readable name per pair (for logs only).

    Derived (not arguments): ``node_index`` (node ids renumbered ``0..num_nodes-1`` in order of first
    appearance of the sorted ids) and ``num_nodes``.
    """

    node: tuple[int, ...]
    edge: tuple[int, ...]
    flops_m: tuple[float, ...]
    fixed_flops_m: float = 0.0
    names: tuple[str, ...] | None = None
    node_index: np.ndarray = field(init=False, repr=False, compare=False)
    num_nodes: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        node = _int_tuple(self.node, "node")
        edge = _int_tuple(self.edge, "edge")
        flops = tuple(float(f) for f in self.flops_m)
        p = len(node)
        if p == 0:
            raise ValueError("GateLayout: node must list at least one pair, got an empty sequence")
        if len(edge) != p or len(flops) != p:
            raise ValueError(f"GateLayout: node, edge and flops_m must have the same length, got "
                             f"{p}, {len(edge)} and {len(flops)}")
        for i, f in enumerate(flops):
            if not (math.isfinite(f) and f >= 0):
                raise ValueError(f"GateLayout: flops_m[{i}] must be finite and >= 0, got {f}")
        fixed = float(self.fixed_flops_m)
        if not math.isfinite(fixed):
            raise ValueError(f"GateLayout: fixed_flops_m must be finite, got {fixed}")
        names = None if self.names is None else tuple(str(n) for n in self.names)
        if names is not None and len(names) != p:
            raise ValueError(f"GateLayout: names must have {p} entries, got {len(names)}")
        edge_node: dict[int, int] = {}
        for i, (e, j) in enumerate(zip(edge, node)):
            if edge_node.setdefault(e, j) != j:
                raise ValueError(f"GateLayout: edge {e} enters node {edge_node[e]} and node {j} "
                                 f"(pair {i}); an edge must enter exactly one node")
        _, index = np.unique(np.asarray(node, dtype=np.int64), return_inverse=True)
        index = index.astype(np.int64).reshape(-1)
        index.setflags(write=False)
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "edge", edge)
        object.__setattr__(self, "flops_m", flops)
        object.__setattr__(self, "fixed_flops_m", fixed)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "node_index", index)
        object.__setattr__(self, "num_nodes", int(index.max()) + 1)

    @property
    def num_pairs(self) -> int:
        """``P``, the length of ``alpha``."""
        return len(self.node)

    def discrete_flops_m(self, alive: np.ndarray) -> float:
        """FLOPs of the discrete network that keeps the live pairs: ``fixed + sum_{o live} FLOPs(o)``."""
        alive = np.asarray(alive, dtype=bool)
        return float(self.fixed_flops_m + np.asarray(self.flops_m, dtype=np.float64)[alive].sum())

    def live_per_node(self, alive: np.ndarray) -> np.ndarray:
        """Number of live pairs entering each (renumbered) node, shape ``(num_nodes,)``."""
        return np.bincount(self.node_index[np.asarray(alive, dtype=bool)], minlength=self.num_nodes)

    def live_per_edge(self, alive: np.ndarray) -> dict[int, int]:
        """Number of live pairs on each edge (every edge of the layout is a key)."""
        counts = {e: 0 for e in self.edge}
        for e, a in zip(self.edge, np.asarray(alive, dtype=bool)):
            counts[e] += int(a)
        return counts

    def fingerprint(self) -> dict[str, Any]:
        """JSON-able summary that a checkpoint uses to check it is loaded into the same space."""
        return {"num_pairs": self.num_pairs, "node": list(self.node), "edge": list(self.edge)}



def require_layout(layout: object, owner: str) -> GateLayout:
    """``layout`` itself if it is a :class:`GateLayout`.

    Raises:
        ValueError: naming ``owner``, for anything else (a supernet gives its layout by ``gate_layout()``).
    """
    if not isinstance(layout, GateLayout):
        raise ValueError(f"{owner}: layout must be a GateLayout (a supernet's gate_layout()), "
                         f"got {type(layout).__name__}")
    return layout
