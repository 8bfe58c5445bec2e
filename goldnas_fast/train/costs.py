"""Parameter and FLOP counts of a trained network, by the NAS-Bench-201 counting rule.

``docs/nasbench201.md`` §1.5: params are ``sum(p.numel())`` / 1e6; FLOPs are multiply-accumulates
of ``Conv2d`` and ``Linear`` modules only (bias terms where present), per image, / 1e6, measured with
forward hooks on one eval-mode forward pass. BatchNorm, ReLU, pooling and additions are not counted.
The same rule is applied to GOLD-NAS networks (DARTS-family papers count the same way); the
auxiliary head, used only in training, is excluded from both counts (DARTS' ``count_parameters_in_MB``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["count_params_m", "count_flops_m"]


def _is_aux(name: str) -> bool:
    return any(part.startswith("aux") for part in name.split("."))


def count_params_m(model: nn.Module) -> float:
    """Millions of parameters, auxiliary head excluded: ``sum(p.numel()) / 1e6``."""
    return sum(p.numel() for n, p in model.named_parameters() if not _is_aux(n)) / 1e6


def count_flops_m(model: nn.Module, forward: Callable[[torch.Tensor], object],
                  input_shape: tuple[int, int, int] = (3, 32, 32)) -> float:
    """Millions of multiply-accumulates per image of ``Conv2d``/``Linear`` modules (NB201 rule).

    Conv2d: ``k_h k_w C_in C_out / groups * H_out W_out (+ C_out H_out W_out with bias)``;
    Linear: ``in * out (+ out with bias)``. ``forward`` runs the model on one image (batch of 1)
    in eval mode, without gradients; the model's training mode is restored afterwards.
    """
    total = [0]

    def conv_hook(m: nn.Conv2d, _inp: object, out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        per_pos = kh * kw * m.in_channels * m.out_channels // m.groups + (m.out_channels if m.bias is not None else 0)
        total[0] += per_pos * out.shape[-2] * out.shape[-1] * out.shape[0]

    def linear_hook(m: nn.Linear, _inp: object, out: torch.Tensor) -> None:
        rows = out.numel() // m.out_features
        total[0] += rows * (m.in_features * m.out_features + (m.out_features if m.bias is not None else 0))

    handles = []
    for name, mod in model.named_modules():
        if _is_aux(name):
            continue
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            forward(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total[0] / 1e6
