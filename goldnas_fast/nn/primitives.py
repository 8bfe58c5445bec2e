"""Parameter-free candidate operators that a fused cell folds into ``node_sum`` instead of running."""
from __future__ import annotations

import torch
from torch import nn

from goldnas_fast.ops.node_sum import Kind, apply_kind_ref

__all__ = ["FusedPrimitive", "Identity", "AvgPool3x3", "MaxPool3x3", "fused_kind"]


class FusedPrimitive(nn.Module):
    """A stride-1 parameter-free operator with a :class:`~goldnas_fast.ops.Kind` code.

    Run on its own it computes its output in plain PyTorch; inside a fused cell it is never run: the
    ``node_sum`` kernel applies it on the fly, so its output is neither materialized nor saved.
    """

    kind: Kind

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = Kind(kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_kind_ref(self.kind, x)

    def extra_repr(self) -> str:
        return self.kind.name


class Identity(FusedPrimitive):
    """Skip connection."""

    def __init__(self) -> None:
        super().__init__(Kind.IDENTITY)


class AvgPool3x3(FusedPrimitive):
    """3x3 average pooling, stride 1, padding 1, ``count_include_pad=False``."""

    def __init__(self) -> None:
        super().__init__(Kind.AVG_POOL_3X3)


class MaxPool3x3(FusedPrimitive):
    """3x3 max pooling, stride 1, padding 1."""

    def __init__(self) -> None:
        super().__init__(Kind.MAX_POOL_3X3)


def fused_kind(op: nn.Module) -> Kind | None:
    """The Kind a fused cell uses for ``op``, or None when the op must be run as a module."""
    return op.kind if isinstance(op, FusedPrimitive) else None
