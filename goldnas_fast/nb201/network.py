"""The discrete NAS-Bench-201 evaluation network (``TinyNetwork``, ``docs/method/nasbench201.md`` §1.4).

``stem -> N cells (C) -> reduction -> N cells (2C) -> reduction -> N cells (4C) -> head``, with
affine BN tracking running statistics and bias-free convs, as the benchmark trained it. Unlike the
official ``TinyNetwork.forward``, which returns ``(features, logits)``, :class:`TinyNetwork` returns
the logits only.
"""
from __future__ import annotations

import torch
from torch import nn

from goldnas_fast.nb201.arch import EDGES, ArchLike, format_arch, to_ops
from goldnas_fast.nb201.blocks import Head, ResNetBasicBlock, Stem, make_op

__all__ = ["InferCell", "TinyNetwork", "build_network"]


class InferCell(nn.Module):
    """One fixed cell: ``node_t = sum_{s<t, op_{s->t} != none} op_{s->t}(node_s)``, output node 3.

    ``layers[e]`` is the op of edge ``e`` (edge order of :data:`~goldnas_fast.nb201.arch.EDGES`), as in
    the official ``InferCell``; ``none`` edges keep a parameter-free :class:`Zero` module there but are
    skipped in ``forward``. A node whose every input is ``none`` is all zeros.
    """

    def __init__(self, arch: ArchLike, C: int) -> None:
        super().__init__()
        self.ops = to_ops(arch)
        self.layers = nn.ModuleList(make_op(op, C) for op in self.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for t in range(1, 4):
            terms = [self.layers[e](nodes[s]) for e, (target, s) in enumerate(EDGES)
                     if target == t and self.ops[e] != "none"]
            node = terms[0] if terms else torch.zeros_like(x)
            for term in terms[1:]:
                node = node + term
            nodes.append(node)
        return nodes[3]

    def extra_repr(self) -> str:
        return format_arch(self.ops)


class TinyNetwork(nn.Module):
    """NAS-Bench-201 evaluation network for one architecture; ``forward(x)`` returns logits."""

    def __init__(self, arch: ArchLike, C: int = 16, N: int = 5, num_classes: int = 10) -> None:
        super().__init__()
        for name, value in (("C", C), ("N", N), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.arch = format_arch(to_ops(arch))
        self.stem = Stem(C)
        cells: list[nn.Module] = []
        widths = (C, 2 * C, 4 * C)
        for stage, width in enumerate(widths):
            if stage > 0:
                cells.append(ResNetBasicBlock(widths[stage - 1], width, stride=2))
            cells.extend(InferCell(self.arch, width) for _ in range(N))
        self.cells = nn.ModuleList(cells)
        self.head = Head(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.head(x)


def build_network(arch: ArchLike, C: int = 16, N: int = 5, num_classes: int = 10) -> TinyNetwork:
    """The evaluation network of ``arch`` (string, index or 6 op names); its forward returns logits.

    Input ``(B, 3, H, H)`` with ``H`` a multiple of 4 (32 for CIFAR, 16 for ImageNet16-120);
    ``num_classes`` 10 / 100 / 120. Parameter count equals ``cost(arch, num_classes).params_m * 1e6``.
    """
    return TinyNetwork(arch, C=C, N=N, num_classes=num_classes)
