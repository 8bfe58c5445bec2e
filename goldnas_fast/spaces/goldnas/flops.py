"""Counting multiply-accumulates of a module by forward hooks (Conv2d and Linear only)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_macs"]


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    r"""Multiply-accumulates *per image* of ``model(x)``, summed over the Conv2d and Linear calls.

    A conv adds :math:`k_h k_w \frac{C_{in}}{g} C_{out} H_{out} W_{out}`, a linear layer
    ``in_features * out_features``; biases, BN, activations and pooling count 0 (the rule of
    ``goldnas.md`` §3.4). Modules that ``forward`` skips are not counted. Runs under ``no_grad`` and does
    not change ``model``'s training mode.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        per_image = out[0].numel()
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += per_image * kh * kw * module.in_channels // module.groups
        else:
            total += per_image * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total
