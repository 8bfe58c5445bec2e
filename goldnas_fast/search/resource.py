r"""The GOLD-NAS resource regularizer :math:`R(\alpha)` as differentiable, vectorized torch functions.

Two forms (``docs/method/goldnas.md`` §3.3 and §8):

* ``log`` (the form of the documented implementation, with the node sum fixed as in §3.9):

  .. math::
     R = \sum_j \sum_{o \to j,\ o \text{ live},\ w_o > \xi_{min}} \ln(1 + n_j w_o)\,(reg + \mu\,FLOPs(o)),
     \qquad w_o = \sigma(\alpha_o) / S_j,\quad S_j = \sum_{o' \to j,\ o' \text{ live}} \sigma(\alpha_{o'})

  with :math:`n_j = |\{o \to j \text{ live}: w_o > \xi_{min}\}|`. :math:`S_j` sums over *all* live pairs
  entering node ``j``, on every edge. :math:`n_j` and the selection are piecewise constant (no gradient).
* ``flops`` (expected FLOPs): :math:`R = \sum_{o \text{ live}} \sigma(\alpha_o)\,FLOPs(o) + c`.

Everything is computed with ``index_add``/``scatter_reduce`` and ``torch.where`` (no boolean indexing,
no ``.item()``), so a step on a GPU never waits for the device. The normalization runs in log space
(``log sigma`` shifted by the per-node maximum), so very negative live logits never give ``0/0``.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from goldnas_fast.nn.gate_layout import GateLayout, require_layout

__all__ = ["normalized_weights", "log_resource", "expected_flops", "ResourceTerm", "regularizer", "KINDS"]

KINDS = ("log", "flops")


def _check(alpha: torch.Tensor, alive: torch.Tensor, name: str) -> None:
    if alpha.dim() != 1:
        raise ValueError(f"{name}: alpha must have shape (P,), got {tuple(alpha.shape)}")
    if not alpha.is_floating_point():
        raise ValueError(f"{name}: alpha must be floating point, got {alpha.dtype}")
    if alive.shape != alpha.shape or alive.dtype != torch.bool:
        raise ValueError(f"{name}: alive must be a bool tensor of shape {tuple(alpha.shape)}, "
                         f"got {alive.dtype} {tuple(alive.shape)}")


def normalized_weights(alpha: torch.Tensor, node_index: torch.Tensor, alive: torch.Tensor,
                       num_nodes: int) -> torch.Tensor:
    r"""Per-node normalized gate weights :math:`w_o = \sigma(\alpha_o)/S_j`, 0 for dead pairs.

    Args:
        alpha: gate logits, shape ``(P,)``.
        node_index: node of each pair, ``long`` in ``[0, num_nodes)``, shape ``(P,)``.
        alive: ``bool`` mask of live pairs, shape ``(P,)``.
        num_nodes: number of nodes.
    """
    _check(alpha, alive, "normalized_weights")
    neg_inf = torch.full_like(alpha, float("-inf"))
    log_sig = torch.where(alive, torch.nn.functional.logsigmoid(alpha), neg_inf)
    # The shift cancels in the ratio, so it carries no gradient; detaching keeps amax out of autograd.
    shift = torch.full((num_nodes,), float("-inf"), dtype=alpha.dtype, device=alpha.device)
    shift = shift.scatter_reduce(0, node_index, log_sig.detach(), reduce="amax", include_self=True)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    e = torch.exp(log_sig - shift[node_index])  # exactly 0 for dead pairs
    s = torch.zeros(num_nodes, dtype=alpha.dtype, device=alpha.device).index_add(0, node_index, e)
    s = torch.where(s > 0, s, torch.ones_like(s))  # nodes without live pairs: avoid 0/0 (all e are 0)
    return e / s[node_index]


def log_resource(alpha: torch.Tensor, node_index: torch.Tensor, alive: torch.Tensor, cost: torch.Tensor,
                 num_nodes: int, xi_min: float) -> torch.Tensor:
    r"""The ``log`` form :math:`\sum_j \sum_{o: w_o > \xi_{min}} \ln(1 + n_j w_o)\,cost_o` (module docstring).

    Args:
        alpha, node_index, alive, num_nodes: as in :func:`normalized_weights`.
        cost: per-pair cost ``reg + mu * FLOPs(o)``, shape ``(P,)``.
        xi_min: pairs with ``w_o <= xi_min`` are left out of the sum and of :math:`n_j`.
    Returns:
        a 0-d tensor, differentiable in ``alpha``.
    """
    w = normalized_weights(alpha, node_index, alive, num_nodes)
    selected = alive & (w.detach() > xi_min)
    n = torch.zeros(num_nodes, dtype=alpha.dtype, device=alpha.device).index_add(
        0, node_index, selected.to(alpha.dtype))
    term = torch.log1p(n[node_index] * w) * cost.to(alpha.dtype)
    return torch.where(selected, term, torch.zeros_like(term)).sum()


def expected_flops(alpha: torch.Tensor, alive: torch.Tensor, flops: torch.Tensor,
                   constant: float = 0.0) -> torch.Tensor:
    r"""The ``flops`` form :math:`\sum_{o \text{ live}} \sigma(\alpha_o) FLOPs(o) + constant` (0-d tensor)."""
    _check(alpha, alive, "expected_flops")
    term = torch.sigmoid(alpha) * flops.to(alpha.dtype)
    return torch.where(alive, term, torch.zeros_like(term)).sum() + constant


class ResourceTerm:
    """The regularizer of one search space, with its per-pair tensors built once on ``device``.

    Args:
        layout: the supernet's gate layout.
        kind: ``'log'`` or ``'flops'``.
        xi_min, reg, mu: hyper-parameters of the ``log`` form (cost ``reg + mu * FLOPs``).
        include_fixed: add ``layout.fixed_flops_m`` to the ``flops`` form (a constant; no gradient).
        device, dtype: where and in which precision the per-pair tensors live.

    Call it as ``term(alpha, alive)`` with ``alive`` a bool tensor on the same device.
    """

    def __init__(self, layout: GateLayout, kind: str = "log", *, xi_min: float = 0.01, reg: float = 1.0,
                 mu: float = 0.0, include_fixed: bool = False, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        if kind not in KINDS:
            raise ValueError(f"ResourceTerm: kind must be one of {KINDS}, got {kind!r}")
        if not 0 < xi_min < 1:
            raise ValueError(f"ResourceTerm: xi_min must be in (0, 1), got {xi_min}")
        self.layout = require_layout(layout, "ResourceTerm")
        self.kind, self.xi_min, self.include_fixed = kind, float(xi_min), include_fixed
        flops = np.asarray(self.layout.flops_m, dtype=np.float64)
        self.node_index = torch.as_tensor(self.layout.node_index.copy(), dtype=torch.long, device=device)
        self.flops = torch.as_tensor(flops, dtype=dtype, device=device)
        self.cost = torch.as_tensor(reg + mu * flops, dtype=dtype, device=device)

    @classmethod
    def from_config(cls, layout: GateLayout, kind: str, config: Any, **kwargs: Any) -> ResourceTerm:
        """Reads ``xi_min``, ``reg`` and ``mu`` from a :class:`~.controller.GoldNasConfig`."""
        return cls(layout, kind, xi_min=config.xi_min, reg=config.reg, mu=config.mu, **kwargs)

    def __call__(self, alpha: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        if self.kind == "log":
            return log_resource(alpha, self.node_index, alive, self.cost, self.layout.num_nodes, self.xi_min)
        const = self.layout.fixed_flops_m if self.include_fixed else 0.0
        return expected_flops(alpha, alive, self.flops, const)


@functools.lru_cache(maxsize=32)
def _node_tensor(node: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, int]:
    _, index = np.unique(np.asarray(node, dtype=np.int64), return_inverse=True)
    index = index.reshape(-1)
    return torch.as_tensor(index, dtype=torch.long, device=device), int(index.max()) + 1


def regularizer(kind: str, alpha: torch.Tensor, node: Sequence[int] | torch.Tensor, alive: torch.Tensor,
                flops: torch.Tensor, config: Any, num_nodes: int | None = None) -> torch.Tensor:
    """Functional entry point: ``R(alpha)`` of ``kind`` (``'log'`` or ``'flops'``).

    Args:
        node: the node each pair enters, either global ids as a sequence (renumbered and moved to
            ``alpha.device`` once, then cached) or an already renumbered ``long`` tensor on that device,
            in which case ``num_nodes`` is required.
        flops: per-pair FLOPs (M), a tensor on ``alpha.device``.
        config: anything with ``xi_min``, ``reg`` and ``mu`` (a :class:`~.controller.GoldNasConfig`).

    For a training loop prefer :class:`ResourceTerm`, which builds the per-pair tensors once.
    """
    if kind not in KINDS:
        raise ValueError(f"regularizer: kind must be one of {KINDS}, got {kind!r}")
    if kind == "flops":
        return expected_flops(alpha, alive, flops)
    if isinstance(node, torch.Tensor):
        if num_nodes is None:
            raise ValueError("regularizer: num_nodes is required when node is a tensor")
        node_index = node
    else:
        node_index, num_nodes = _node_tensor(tuple(int(j) for j in node), alpha.device)
    cost = config.reg + config.mu * flops
    return log_resource(alpha, node_index, alive, cost, num_nodes, config.xi_min)
