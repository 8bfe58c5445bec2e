"""``mixed_sum``: the weighted sum of candidate outputs, fused forward and one-pass backward."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from goldnas_fast import _library  # noqa: F401  (registers torch.ops.goldnas)
from goldnas_fast.ops._layout import output_like
from goldnas_fast.ops._validate import check_tensor_list, check_weights, value_error_of

__all__ = ["mixed_sum", "mixed_sum_ref"]


def mixed_sum(inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    r"""Weighted sum of K candidate outputs, :math:`y = \sum_k w_k x_k`.

    Forward reads every input once and writes ``y`` once. The backward is one fused pass that reads
    the output gradient :math:`g` once per chunk of inputs and produces both
    :math:`\partial L/\partial x_k = w_k g` and :math:`\partial L/\partial w_k = \langle x_k, g\rangle`,
    the gate gradients summed in a fixed order (deterministic, no atomics), accumulated in float32
    (float64 for float64 inputs).

    Args:
        inputs: K >= 1 tensors of one shape, dtype (float16, bfloat16, float32; float64 on CPU) and
            device. Any strides; inputs that share one dense layout (e.g. channels_last) are used
            without a copy, others are made contiguous.
        weights: 1-D tensor of K gate values on the same device (any floating dtype).

    Returns:
        A tensor of the inputs' shape, dtype and (dense) layout.

    Raises:
        ValueError: K = 0, inputs that differ in shape/dtype/device, integer tensors, or weights of the
            wrong length, rank or device.
    """
    # The kernels check every argument (ValueError); Python looks again only to explain a failure that the
    # dispatcher reports as a type error (a single tensor, a non-tensor element).
    try:
        return torch.ops.goldnas.mixed_sum(inputs, weights)
    except (TypeError, RuntimeError) as exc:
        error = value_error_of(lambda: _check_args("mixed_sum", inputs, weights))
        if error is None:
            raise
        raise error from exc


def _check_args(op: str, inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> list[torch.Tensor]:
    inputs = check_tensor_list(op, "inputs", inputs)
    check_weights(op, weights, len(inputs), inputs[0].device)
    return inputs


def mixed_sum_ref(inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Plain PyTorch reference of :func:`mixed_sum` (the DARTS ``sum(w * x)``)."""
    inputs = _check_args("mixed_sum_ref", inputs, weights)
    out = weights[0].to(inputs[0].dtype) * inputs[0]
    for w, x in zip(weights[1:], inputs[1:]):
        out = out + w.to(x.dtype) * x
    return out


@torch.library.register_fake("goldnas::mixed_sum")
def _mixed_sum_fake(inputs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    torch._check(len(inputs) >= 1, lambda: "mixed_sum: inputs must hold at least one tensor")
    torch._check(weights.dim() == 1 and weights.shape[0] == len(inputs),
                 lambda: "mixed_sum: weights must be 1-D with one entry per input")
    return output_like(inputs, pooling=False)


@torch.library.register_fake("goldnas::mixed_sum_backward")
def _mixed_sum_backward_fake(grad_out: torch.Tensor, inputs: list[torch.Tensor], weights: torch.Tensor,
                             need_inputs_grad: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    grads = [output_like([*inputs, grad_out], pooling=False) for _ in inputs] if need_inputs_grad else []
    return grads, torch.empty_like(weights)
