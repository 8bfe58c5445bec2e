"""Training-mode BatchNorm without affine parameters that saves its *output* for backward.

``nn.BatchNorm2d(affine=False)`` saves its input; its output ``y = (x - mean) * invstd`` is all the
backward needs, and a fused cell keeps ``y`` anyway (``node_sum`` reads it for the gate gradient), so
saving ``y`` instead drops one activation per operator. The backward is ATen's own fused BatchNorm
backward fed with ``y`` as the input, mean 0, inverse std 1 and ``invstd`` as the weight, which is
algebraically the same gradient: ``invstd * (g - mean(g) - y * mean(g * y))``.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["output_saving_batch_norm", "saves_output", "has_hooks"]

_PLAIN_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _OutputSavingBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                momentum: float, eps: float) -> torch.Tensor:
        y, _, invstd = torch.native_batch_norm(x, None, None, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(y, invstd)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable  # invstd is saved as a constant: no double backward
    def backward(ctx, grad: torch.Tensor):
        y, invstd = ctx.saved_tensors
        grad_x, _, _ = torch.ops.aten.native_batch_norm_backward(
            grad, y, invstd, None, None,
            torch.zeros_like(invstd), torch.ones_like(invstd), True, 0.0, [True, False, False])
        return grad_x, None, None, None, None


def saves_output(module: nn.Module) -> bool:
    """Whether :func:`output_saving_batch_norm` may stand in for ``module`` now.

    True for a plain ``BatchNorm{1,2,3}d`` without affine parameters, without hooks, that normalizes with
    batch statistics (training mode, or no running statistics), outside ``torch.compile`` (which plans
    its own saved tensors) and ``torch.func`` transforms. Its backward is not differentiable again
    (double backward raises).
    """
    return (type(module) in _PLAIN_BATCH_NORMS and not module.affine
            and (module.training or not module.track_running_stats)
            and not has_hooks(module) and not torch.compiler.is_compiling() and not _functorch_active())


def has_hooks(module: nn.Module) -> bool:
    """Whether a forward or backward hook (the module's own or a global one) would see ``module`` run."""
    from torch.nn.modules import module as m

    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or m._global_forward_hooks or m._global_forward_pre_hooks
                or m._global_backward_hooks or m._global_backward_pre_hooks)


def _functorch_active() -> bool:
    # torch.func transforms (grad, vmap, jvp) need setup_context/jvp, which this Function does not have.
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def output_saving_batch_norm(module: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for a module accepted by :func:`saves_output`, saving the output instead of ``x``.

    Running statistics and the batch counter move exactly as ``module(x)`` moves them.
    """
    module._check_input_dim(x)
    if module.training:
        torch.nn.functional._verify_batch_size(x.size())  # one value per channel: the error nn.BatchNorm raises
    momentum = 0.0 if module.momentum is None else module.momentum
    if module.training and module.track_running_stats and module.num_batches_tracked is not None:
        module.num_batches_tracked.add_(1)
        if module.momentum is None:  # cumulative moving average, as nn.BatchNorm
            momentum = 1.0 / float(module.num_batches_tracked)
    track = module.training and module.track_running_stats
    return _OutputSavingBatchNorm.apply(x, module.running_mean if track else None,
                                        module.running_var if track else None, momentum, module.eps)
