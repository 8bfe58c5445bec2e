"""The one hook-based counter of multiply-accumulates (Conv2d and Linear layers)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["count_macs"]


def count_macs(model: nn.Module, x: torch.Tensor, *, bias: bool = False,
               forward: Callable[[torch.Tensor], object] | None = None,
               exclude: Callable[[str], bool] | None = None) -> int:
    r"""Multiply-accumulates *per image* of one forward pass, summed over the ``Conv2d`` and ``Linear`` calls.

    A conv adds :math:`k_h k_w \frac{C_{in}}{g} C_{out} H_{out} W_{out}`, a linear layer
    ``in_features * out_features`` per output row; with ``bias=True`` every output element of a layer
    that has a bias adds one more. BatchNorm, activations, pooling and additions count 0. Modules the
    forward pass skips are not counted, and a module called twice counts twice.

    The two rules in use: NAS-Bench-201's official numbers count biases (``docs/method/nasbench201.md``
    §1.5, ``bias=True``); the GOLD-NAS cost model does not (``docs/method/goldnas.md`` §3.4,
    ``bias=False``).

    Args:
        model: the network; its training mode is left as it is (call ``eval()`` first where it matters).
        x: the input batch; the count is divided by ``x.shape[0]``.
        bias: count bias additions (see above); off by default, as the DARTS-family papers count.
        forward: what to call instead of ``model(x)`` (e.g. a wrapper that drops auxiliary outputs).
        exclude: ``exclude(qualified_name)`` true leaves that module out (e.g. an auxiliary head).
    """
    total = 0

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        outputs = out.numel()
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += outputs * kh * kw * (module.in_channels // module.groups)
        else:
            total += outputs * module.in_features
        if bias and module.bias is not None:
            total += outputs

    handles = [m.register_forward_hook(hook) for name, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and not (exclude is not None and exclude(name))]
    try:
        with torch.no_grad():
            (forward or model)(x)
    finally:
        for h in handles:
            h.remove()
    return total // x.shape[0]
