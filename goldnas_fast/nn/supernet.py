"""The contract every searchable supernet keeps: pairs, gates, the parameter split, pruning masks,
cell modes, and the gate layout that the search's controller and regularizer read.

A *pair* is one candidate operator on one edge (shared by all cells, or of one cell). A supernet has
one gate logit per pair in ``alpha`` (flattened in :attr:`Supernet.pairs` order), computes only the
pairs that are alive, and describes them by a :class:`~goldnas_fast.nn.gate_layout.GateLayout`. The
search code talks to a supernet only through this class, so a new search space is a new subclass.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from goldnas_fast.nn.cell import BACKENDS, MEMORY_FORMATS, DAGCell
from goldnas_fast.nn.gate_layout import GateLayout

__all__ = ["Supernet", "check_modes"]


def check_modes(owner: str, backend: str | None = None, lean: Any = None, memory_format: str | None = None) -> None:
    """Rejects a bad ``backend``, a non-bool ``lean`` or a bad ``memory_format`` (``None``: not given).

    Raises:
        ValueError: naming ``owner`` and the argument.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"{owner}: backend must be one of {BACKENDS}, got {backend!r}")
    if lean is not None and not isinstance(lean, bool):
        raise ValueError(f"{owner}: lean must be a bool, got {lean!r}")
    if memory_format is not None and memory_format not in MEMORY_FORMATS:
        raise ValueError(f"{owner}: memory_format must be one of {MEMORY_FORMATS}, got {memory_format!r}")


class Supernet(nn.Module):
    """Base class of the searchable supernets (module docstring).

    Subclasses set ``self.alpha`` (one logit per pair, any shape that flattens in pair order) and
    ``self.pairs``, build their :class:`~goldnas_fast.nn.DAGCell` cells, and implement
    :meth:`search_cells`, :meth:`gate_values`, :meth:`pair_node`, :meth:`pair_edge`,
    :meth:`pair_flops_m`, :meth:`fixed_flops_m` and :meth:`_apply_alive`.
    """

    alpha: nn.Parameter
    pairs: list[tuple[Any, ...]]

    def __init__(self) -> None:
        super().__init__()
        self._alive: list[bool] = []

    # ----------------------------------------------------------------- structure
    @property
    def num_pairs(self) -> int:
        """``P``, the number of (edge, operator) pairs and of gate logits."""
        return len(self.pairs)

    def search_cells(self) -> list[DAGCell]:
        """The searchable cells, in network order."""
        raise NotImplementedError

    def pair_node(self) -> list[int]:
        """Global id of the node each pair enters (gates are normalized per node)."""
        raise NotImplementedError

    def pair_edge(self) -> list[int]:
        """Global id of the edge each pair lies on."""
        raise NotImplementedError

    def pair_flops_m(self) -> list[float]:
        """FLOPs (M multiply-accumulates per image) each pair adds to the discrete network."""
        raise NotImplementedError

    def fixed_flops_m(self) -> float:
        """FLOPs (M) of everything that is not searched (stem, reductions, pre-processing, head)."""
        raise NotImplementedError

    def gate_layout(self) -> GateLayout:
        """The typed per-pair layout the GOLD-NAS controller and regularizer work on."""
        return GateLayout(tuple(self.pair_node()), tuple(self.pair_edge()), tuple(self.pair_flops_m()),
                          float(self.fixed_flops_m()))

    # ----------------------------------------------------------------- cell modes, set on every cell
    @property
    def backend(self) -> str:
        """``'fused'`` (``node_sum``) or ``'reference'`` (eager ``sum(w * op(x))``), for all cells at once."""
        return self.search_cells()[0].backend

    @backend.setter
    def backend(self, value: str) -> None:
        check_modes(type(self).__name__, backend=value)
        for cell in self.search_cells():
            cell.backend = value

    @property
    def lean(self) -> bool:
        """Whether the cells recompute operator activations in backward."""
        return bool(self.search_cells()[0].lean)

    @lean.setter
    def lean(self, value: bool) -> None:
        check_modes(type(self).__name__, lean=value)
        for cell in self.search_cells():
            cell.lean = value

    @property
    def memory_format(self) -> str:
        """The fused cells' layout choice, ``'auto'`` (default: channels_last on CPU) or ``'preserve'``
        (:class:`~goldnas_fast.nn.DAGCell` ``memory_format``)."""
        return self.search_cells()[0].memory_format

    @memory_format.setter
    def memory_format(self, value: str) -> None:
        check_modes(type(self).__name__, memory_format=value)
        for cell in self.search_cells():
            cell.memory_format = value

    # ----------------------------------------------------------------- parameters and gates
    def arch_parameters(self) -> list[nn.Parameter]:
        """``[alpha]``, the gate logits."""
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter but ``alpha`` (pruned operators' weights included, frozen)."""
        return [p for p in self.parameters() if p is not self.alpha]

    def gate_values(self) -> torch.Tensor:
        """The gate of every pair, flattened in :attr:`pairs` order (differentiable)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- pruning masks
    @property
    def alive(self) -> list[bool]:
        """Which pairs survive (host-side list, :attr:`pairs` order)."""
        return list(self._alive)

    def set_alive(self, alive: Sequence[bool] | torch.Tensor) -> None:
        """Sets the surviving pairs; pruned pairs are not computed and their weights are frozen.

        Raises:
            ValueError: ``alive`` does not have one entry per pair, or a node would keep no input pair.
        """
        alive = [bool(a) for a in (alive.tolist() if isinstance(alive, torch.Tensor) else alive)]
        if len(alive) != self.num_pairs:
            raise ValueError(f"{type(self).__name__}.set_alive: alive has {len(alive)} entries, expected "
                             f"{self.num_pairs} (one per pair)")
        self._alive = self._apply_alive(alive)

    def _apply_alive(self, alive: list[bool]) -> list[bool]:
        """Checks ``alive`` (one bool per pair), pushes it into the cells, returns what :attr:`alive` reports."""
        raise NotImplementedError
