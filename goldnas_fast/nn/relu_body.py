"""Operators that start with a ReLU: the fused cell computes that ReLU once per source node.

DARTS-style candidates (``ReLU -> conv -> BN``, separable and dilated convs) all begin with a ReLU of
their input. The eager reference runs, and saves, one ReLU per operator; a fused cell runs one per
source node and feeds the rest of every such operator (its *body*) from it; a body that ends in an
affine-free BatchNorm saves that BatchNorm's output (:mod:`goldnas_fast.nn.lean_batch_norm`).

An operator qualifies when it is a plain ``nn.Sequential`` (``forward`` not overridden) whose first
layer is ``nn.ReLU`` or, recursively, such a Sequential; a module of another class opts in by
defining ``as_sequential()`` returning the Sequential that computes it. Modules with hooks never
qualify, since the fused path does not call their ``forward``; neither do operators with an in-place
layer (it would overwrite the shared ReLU or a saved output) or an in-place leading ReLU.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from goldnas_fast.nn.lean_batch_norm import has_hooks, output_saving_batch_norm, saves_output

__all__ = ["relu_body", "run_body"]


def relu_body(op: nn.Module) -> list[nn.Module] | None:
    """The layers ``op`` applies after its leading ReLU, or None when ``op`` does not start with one."""
    if has_hooks(op):
        return None
    as_sequential = getattr(op, "as_sequential", None)
    if as_sequential is not None:
        op = as_sequential()
    if not isinstance(op, nn.Sequential) or type(op).forward is not nn.Sequential.forward or len(op) == 0 \
            or has_hooks(op):
        return None
    first, rest = op[0], list(op)[1:]
    if any(getattr(layer, "inplace", False) for layer in rest):
        return None  # an in-place layer would overwrite the shared ReLU or a saved output
    if type(first) is nn.ReLU and not first.inplace and not has_hooks(first):
        return rest
    inner = relu_body(first)
    return None if inner is None else inner + rest


def run_body(layers: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Applies ``layers`` in order; a last layer that is a non-affine batch-statistics BatchNorm saves its output.

    Only the last one: its output is the operator's, which the cell's ``node_sum`` keeps anyway, whereas
    an inner BatchNorm's output would be saved in addition to what the next layer saves.
    """
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        x = output_saving_batch_norm(layer, x) if last and saves_output(layer) else layer(x)
    return x
