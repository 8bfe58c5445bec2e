"""Comparing two float32 computations that may round differently (e.g. a fused and a reference network whose
oneDNN convolutions pick other algorithms) by their error against a float64 run, not against each other."""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

StepResult = tuple[torch.Tensor, dict[str, torch.Tensor]]


def assert_as_accurate(step: Callable[[nn.Module, torch.Tensor], StepResult], candidate: nn.Module,
                       reference: nn.Module, x: torch.Tensor, factor: float = 2.0, slack: float = 1e-5) -> None:
    """``step(net, x)`` returns (outputs, parameter gradients). The candidate's outputs and every gradient must
    be within ``factor`` times the reference's float32 error of a float64 run of the reference, plus ``slack``
    times the largest output (for outputs) or the largest gradient of all parameters (for gradients): some
    true gradients are 0, e.g. of a convolution's bias before an affine-free BatchNorm, and then both sides
    hold nothing but rounding noise of the size of the other gradients."""
    exact = copy.deepcopy(reference).double()
    out_t, grads_t = step(exact, x.double())
    out_r, grads_r = step(reference, x)
    out_c, grads_c = step(candidate, x)
    assert grads_c.keys() == grads_r.keys() == grads_t.keys()
    grad_scale = max(g.abs().max().item() for g in grads_t.values())
    pairs = [("outputs", out_c, out_r, out_t, out_t.abs().max().item())]
    pairs += [(n, grads_c[n], grads_r[n], grads_t[n], grad_scale) for n in grads_t]
    for name, c, r, t, scale in pairs:
        err_c = (c.double() - t).abs().max().item()
        err_r = (r.double() - t).abs().max().item()
        bound = factor * err_r + slack * scale
        assert err_c <= bound, f"{name}: error {err_c:.3g} > {factor} x reference error {err_r:.3g} + slack"
