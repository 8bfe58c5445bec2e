"""``node_sum``: a cell node as the gated sum over its surviving (edge, operator) entries."""
from __future__ import annotations

import enum
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from goldnas_fast.ops._validate import check_tensor_list, check_weights

__all__ = ["Kind", "node_sum_ref"]


class Kind(enum.IntEnum):
    """What an entry applies to its tensor inside :func:`node_sum` (parameter-free operators only)."""

    IDENTITY = 0  #: the tensor itself: a skip connection, or a precomputed parametric op output
    AVG_POOL_3X3 = 1  #: 3x3 average pooling, stride 1, padding 1, count_include_pad=False
    MAX_POOL_3X3 = 2  #: 3x3 max pooling, stride 1, padding 1


def _check_entries(op: str, tensors: Sequence[torch.Tensor], kinds: Sequence[int], gates: Sequence[int],
                   weights: torch.Tensor) -> tuple[list[torch.Tensor], list[Kind], list[int]]:
    tensors = check_tensor_list(op, "tensors", tensors)
    kinds, gates = list(kinds), list(gates)
    if len(kinds) != len(tensors):
        raise ValueError(f"{op}: kinds has {len(kinds)} entries but tensors has {len(tensors)}")
    if len(gates) != len(tensors):
        raise ValueError(f"{op}: gates has {len(gates)} entries but tensors has {len(tensors)}")
    check_weights(op, weights, None, tensors[0].device)
    parsed = []
    for e, k in enumerate(kinds):
        try:
            parsed.append(Kind(int(k)))
        except (ValueError, TypeError):
            raise ValueError(f"{op}: kinds[{e}] = {k!r} is not a goldnas_fast.ops.Kind "
                             f"(expected one of {[int(x) for x in Kind]})") from None
    for e, g in enumerate(gates):
        if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g < weights.numel():
            raise ValueError(f"{op}: gates[{e}] = {g!r} is out of range for weights with {weights.numel()} entries")
    if any(k != Kind.IDENTITY for k in parsed) and tensors[0].dim() != 4:
        raise ValueError(f"{op}: pooling kinds need 4-D (N, C, H, W) tensors, got shape {tuple(tensors[0].shape)}")
    return tensors, parsed, gates


def apply_kind_ref(kind: Kind, x: torch.Tensor) -> torch.Tensor:
    """The operator of one entry, in plain PyTorch."""
    if kind == Kind.IDENTITY:
        return x
    if kind == Kind.AVG_POOL_3X3:
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return F.max_pool2d(x, 3, stride=1, padding=1)


def node_sum_ref(tensors: Sequence[torch.Tensor], kinds: Sequence[int], gates: Sequence[int],
                 weights: torch.Tensor) -> torch.Tensor:
    r"""Plain PyTorch reference of :func:`node_sum`: :math:`\sum_e w_{g_e}\,\mathrm{kind}_e(x_e)`."""
    tensors, kinds, gates = _check_entries("node_sum_ref", tensors, kinds, gates, weights)
    out = None
    for x, kind, gate in zip(tensors, kinds, gates):
        term = weights[gate].to(x.dtype) * apply_kind_ref(kind, x)
        out = term if out is None else out + term
    return out
