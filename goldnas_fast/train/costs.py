"""Parameter and FLOP counts of a trained network, by the NAS-Bench-201 counting rule.

``docs/method/nasbench201.md`` §1.5: params are ``sum(p.numel())`` / 1e6; FLOPs are multiply-accumulates
of ``Conv2d`` and ``Linear`` modules only (bias terms where present), per image, / 1e6, measured with
forward hooks on one eval-mode forward pass. BatchNorm, ReLU, pooling and additions are not counted.
The same rule is applied to GOLD-NAS networks (DARTS-family papers count the same way); the
auxiliary head, used only in training, is excluded from both counts (DARTS' ``count_parameters_in_MB``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from goldnas_fast.nn.flops import count_macs

__all__ = ["count_params_m", "count_flops_m"]


def _is_aux(name: str) -> bool:
    return any(part.startswith("aux") for part in name.split("."))


def count_params_m(model: nn.Module) -> float:
    """Millions of parameters, auxiliary head excluded: ``sum(p.numel()) / 1e6``."""
    return sum(p.numel() for n, p in model.named_parameters() if not _is_aux(n)) / 1e6


def count_flops_m(model: nn.Module, forward: Callable[[torch.Tensor], object],
                  input_shape: tuple[int, int, int] = (3, 32, 32)) -> float:
    """Millions of multiply-accumulates per image of ``Conv2d``/``Linear`` modules (NB201 rule: biases
    counted, :func:`~goldnas_fast.nn.flops.count_macs` with ``bias=True``). ``forward`` runs the model on
    one image in eval mode, without gradients; the model's training mode is restored afterwards.
    """
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        macs = count_macs(model, torch.zeros(1, *input_shape, device=device), bias=True, forward=forward,
                          exclude=_is_aux)
    finally:
        model.train(was_training)
    return macs / 1e6
