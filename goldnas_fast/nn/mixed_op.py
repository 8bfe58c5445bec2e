"""``MixedOp``: the DARTS mixed operation on the fused ``mixed_sum`` kernel."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from goldnas_fast.ops import mixed_sum

__all__ = ["MixedOp"]


class MixedOp(nn.Module):
    r"""Drop-in replacement for the DARTS ``MixedOp``: :math:`y = \sum_k w_k\, \mathrm{op}_k(x)`.

    Where DARTS writes ``sum(w * op(x) for w, op in zip(weights, self._ops))``, this module runs the
    candidates and combines them with the fused :func:`goldnas_fast.ops.mixed_sum`, whose backward
    reads the output gradient once and yields every gate gradient in the same pass.

    Args:
        candidates: the candidate operators, each mapping a tensor to a tensor of one common shape.
    """

    def __init__(self, candidates: Iterable[nn.Module]) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        if len(self.candidates) == 0:
            raise ValueError("MixedOp: candidates must hold at least one module")

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Mix the candidates' outputs on ``x`` with ``weights`` (1-D, one gate per candidate)."""
        if weights.dim() != 1 or weights.numel() != len(self.candidates):
            raise ValueError(f"MixedOp: weights must be 1-D with {len(self.candidates)} entries, "
                             f"got shape {tuple(weights.shape)}")
        return mixed_sum([op(x) for op in self.candidates], weights)
