"""``node_sum``: a cell node as the gated sum over its surviving (edge, operator) entries."""
from __future__ import annotations

import enum
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from goldnas_fast import _library  # noqa: F401  (registers torch.ops.goldnas)
from goldnas_fast.ops._layout import output_like
from goldnas_fast.ops._validate import check_tensor_list, check_weights, value_error_of
from goldnas_fast.ops.pooling import avg_pool_3x3

__all__ = ["Kind", "node_sum", "node_sum_ref"]


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
    # operator.index: the integers that the op's int[] arguments take (numpy integers too), never floats.
    for e, k in enumerate(kinds):
        try:
            # Kind members skip operator.index, which dynamo cannot trace on an IntEnum (recursion)
            parsed.append(k if isinstance(k, Kind) else Kind(operator.index(k)))
        except (ValueError, TypeError):
            raise ValueError(f"{op}: kinds[{e}] = {k!r} is not a goldnas_fast.ops.Kind "
                             f"(expected one of {[int(x) for x in Kind]})") from None
    for e, g in enumerate(gates):
        try:
            index = g if type(g) is int else operator.index(g)
        except TypeError:
            index = None
        if index is None or isinstance(g, bool) or not 0 <= index < weights.numel():
            raise ValueError(f"{op}: gates[{e}] = {g!r} is out of range for weights with {weights.numel()} entries")
    if any(k != Kind.IDENTITY for k in parsed) and tensors[0].dim() != 4:
        raise ValueError(f"{op}: pooling kinds need 4-D (N, C, H, W) tensors, got shape {tuple(tensors[0].shape)}")
    return tensors, parsed, gates


def apply_kind_ref(kind: Kind, x: torch.Tensor) -> torch.Tensor:
    """The operator of one entry, in plain PyTorch (average pooling through
    :func:`~goldnas_fast.ops.pooling.avg_pool_3x3`, safe from torch's channels_last CUDA backward bug)."""
    if kind == Kind.IDENTITY:
        return x
    if kind == Kind.AVG_POOL_3X3:
        return avg_pool_3x3(x)
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


def _dedupe(tensors: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """Unique tensors by identity (``is``, not equal values or shared storage), in order of first
    appearance, and each entry's index among them."""
    index: dict[int, int] = {}
    sources = [index.setdefault(id(t), len(index)) for t in tensors]
    if len(index) == len(sources):
        return list(tensors), sources
    return list({id(t): t for t in tensors}.values()), sources


def node_sum(tensors: Sequence[torch.Tensor], kinds: Sequence[int], gates: Sequence[int],
             weights: torch.Tensor) -> torch.Tensor:
    r"""A cell node as the gated sum over its surviving entries, fused into one kernel.

    .. math::
        y = \sum_{e=1}^{E} w_{g_e}\,\mathrm{kind}_e(x_e)

    where ``kind`` is the identity (a skip connection, or the precomputed output of a parametric
    operator such as a convolution), 3x3 average pooling (stride 1, padding 1,
    ``count_include_pad=False``) or 3x3 max pooling (stride 1, padding 1). The pooled outputs are
    computed inside the kernel and are neither materialized nor saved for backward: only the distinct
    input tensors are saved.

    The backward is one fused pass: with :math:`g = \partial L/\partial y`,
    :math:`\partial L/\partial x = \sum_{e: x_e = x} w_{g_e}\,\mathrm{kind}_e^{*}(g)` for every distinct
    input (the adjoint of identity or pooling, accumulated where a tensor appears in several entries;
    max pooling routes each window's gradient to its first maximum in row-major order, as PyTorch does)
    and :math:`\partial L/\partial w_j = \sum_{e: g_e = j} \langle \mathrm{kind}_e(x_e), g\rangle`,
    summed in a fixed order (deterministic, no atomics) in float32 (float64 for float64 inputs).

    The entry description (``kinds``, ``gates``) stays on the host: no host-device synchronisation.

    Args:
        tensors: E >= 1 tensors of one shape, dtype and device; the same tensor object may appear in
            several entries. 4-D (N, C, H, W) when any entry pools: then NCHW-contiguous or
            channels_last inputs are used without a copy (the first tensor's layout is taken, others
            are converted to it) and the output has that layout; any rank and any shared dense layout
            for identity-only nodes. float16, bfloat16, float32 or float64.
        kinds: E codes of :class:`Kind`.
        gates: E indices into ``weights``; entries may share a gate.
        weights: 1-D floating tensor of the gate values of the whole cell or network, on the tensors'
            device. Gates that no entry uses get a zero gradient.

    Returns:
        A tensor of the inputs' shape and dtype.

    Raises:
        ValueError: E = 0, ``kinds``/``gates`` lengths that differ from ``tensors``, an unknown kind, a
            gate index out of range, tensors that differ in shape/dtype/device, or pooling on a tensor
            that is not 4-D.
    """
    # The kernels check every argument (ValueError); Python looks again only to explain a failure in terms
    # of this function's arguments (tensors[k] rather than the k-th distinct input, a non-int kind).
    if isinstance(tensors, torch.Tensor):
        raise ValueError("node_sum: tensors must be a sequence of tensors, got a single tensor")
    try:
        inputs, sources = _dedupe(tensors)
        return torch.ops.goldnas.node_sum(inputs, sources, kinds, gates, weights)
    except (TypeError, ValueError, RuntimeError) as exc:
        error = value_error_of(lambda: _check_entries("node_sum", tensors, kinds, gates, weights))
        if error is None:
            raise
        raise error from exc


@torch.library.register_fake("goldnas::node_sum")
def _node_sum_fake(inputs: list[torch.Tensor], sources: list[int], kinds: list[int], gates: list[int],
                   weights: torch.Tensor) -> torch.Tensor:
    torch._check(len(inputs) >= 1 and len(sources) >= 1, lambda: "node_sum: needs at least one entry")
    torch._check(len(kinds) == len(sources) and len(gates) == len(sources),
                 lambda: "node_sum: sources, kinds and gates must have one entry each")
    return output_like(inputs, any(k != Kind.IDENTITY for k in kinds))


@torch.library.register_fake("goldnas::node_sum_backward")
def _node_sum_backward_fake(grad_out: torch.Tensor, inputs: list[torch.Tensor], sources: list[int],
                            kinds: list[int], gates: list[int], weights: torch.Tensor,
                            need_inputs_grad: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    pooling = any(k != Kind.IDENTITY for k in kinds)
    grads = [output_like([*inputs, grad_out], pooling) for _ in inputs] if need_inputs_grad else []
    return grads, torch.empty_like(weights)
