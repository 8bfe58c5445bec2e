"""The GOLD-NAS search loop (Algorithm 1): one-level training of weights and gates, pruning per epoch.

Per mini-batch: ``L = CE (+ 0.4 CE_aux) + lambda * R(alpha)``, one backward pass, the weight gradient
clipped to norm 5, then an SGD step for the gates and one for the weights (``goldnas.md`` §3.2).
Per epoch, on the host and once: the gate logits are copied, the controller prunes, adapts lambda,
records the architecture at the end of a stable plateau and decides whether to stop. Nothing in the
per-step path reads a device value back, so a GPU runs without per-step synchronisation.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from goldnas_fast.search.controller import EpochDecision, GoldNasConfig, GoldNasController
from goldnas_fast.search.distributed import Context
from goldnas_fast.search.resource import ResourceTerm
from goldnas_fast.spaces.adapter import SearchSpace

__all__ = ["OneLevelConfig", "GoldNasSearch"]


@dataclass
class OneLevelConfig:
    """Optimizer settings of the one-level search (defaults of ``goldnas.md`` §3.1)."""

    lr_weights: float = 0.01
    lr_alpha: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    weight_decay_alpha: float = 0.0
    grad_clip: float = 5.0
    resource: str = "log"  # 'log' (the documented implementation's form) or 'flops' (expected FLOPs)

    def __post_init__(self) -> None:
        for name in ("lr_weights", "lr_alpha", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"OneLevelConfig: {name} must be > 0, got {getattr(self, name)}")
        if self.resource not in ("log", "flops"):
            raise ValueError(f"OneLevelConfig: resource must be 'log' or 'flops', got {self.resource!r}")


class GoldNasSearch:
    """Runs GOLD-NAS on a :class:`~goldnas_fast.spaces.adapter.SearchSpace`.

    On NAS-Bench-201 the search also stops once every edge keeps at most one operator (``goldnas.md`` §9).

    Args:
        space: the supernet with sigmoid gates.
        gold: the pruning/lambda/recording hyper-parameters.
        opt: the optimizer settings.
        device: where the supernet runs.
        ctx: the distributed context (a single process by default).
    """

    def __init__(self, space: SearchSpace, gold: GoldNasConfig, opt: OneLevelConfig, device: torch.device,
                 ctx: Context | None = None) -> None:
        self.space, self.opt, self.device = space, opt, device
        self.ctx = ctx or Context(device=device)
        if space.name == "nb201" and not gold.stop_one_op_per_edge:
            gold = GoldNasConfig(**{**gold.to_dict(), "stop_one_op_per_edge": True})
        self.gold = gold
        net = space.network.to(device)
        self.alpha = space.alpha()
        self.layout = space.gate_layout()
        self.controller = GoldNasController(gold, self.layout)
        self.resource = ResourceTerm.from_config(self.layout, opt.resource, gold, device=device)
        self.weights_opt = torch.optim.SGD(net.weight_parameters(), lr=opt.lr_weights, momentum=opt.momentum,
                                           weight_decay=opt.weight_decay)
        self.alpha_opt = torch.optim.SGD([self.alpha], lr=opt.lr_alpha, momentum=opt.momentum,
                                         weight_decay=opt.weight_decay_alpha)
        self._module: torch.nn.Module | None = None
        self._sync_alive()

    @property
    def module(self) -> torch.nn.Module:
        """What training calls: the network, or its DDP wrapper over the surviving parameters.

        The wrapper is built here, lazily, after each change of the surviving set. Building it is a
        collective, so it happens inside :meth:`train_epoch`, which every rank runs together, and never
        in :meth:`load_state_dict`, which a resuming run calls on rank 0 alone.
        """
        if self._module is None:
            self._module = self.ctx.wrap(self.space.network)
        return self._module

    def discrete_flops_m(self) -> float:
        """FLOPs of the network the surviving pairs form (fixed part included)."""
        return self.controller.discrete_flops_m()

    def _sync_alive(self) -> None:
        """Pushes the controller's mask into the network (host side); the DDP wrapper is rebuilt lazily."""
        self.space.set_alive(self.controller.alive.tolist())
        self._alive_t = self.controller.alive_tensor(self.device)
        self._module = None  # pruned parameters are frozen now: the next wrapper leaves them out

    def train_epoch(self, batches: Iterable, lam: float,
                    progress: Callable[[dict[str, float]], None] | None = None) -> dict[str, float]:
        """One pass over ``batches``; returns mean loss, accuracy and regularizer (one host sync)."""
        self.space.network.train()
        weights = [p for p in self.space.network.weight_parameters() if p.requires_grad]
        module = self.module
        totals = torch.zeros(3, device=self.device)  # loss, correct, regularizer (summed over images)
        seen = 0
        for images, labels in batches:
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            ce, logits = self.space.loss(images, labels, module=module)
            reg = self.resource(self.alpha, self._alive_t)
            loss = ce + lam * reg
            self.weights_opt.zero_grad(set_to_none=True)
            self.alpha_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(weights, self.opt.grad_clip)
            self.alpha_opt.step()
            self.weights_opt.step()
            n = labels.numel()
            seen += n
            totals += torch.stack([ce.detach() * n, (logits.detach().argmax(1) == labels).sum(), reg.detach() * n])
            if progress is not None:
                progress({"n": n})
        totals = self.ctx.all_reduce_sum(totals)
        seen = self.ctx.all_reduce_sum(torch.tensor(float(seen), device=self.device))
        loss, correct, reg = (totals / seen.clamp_min(1)).cpu().tolist()
        return {"loss": loss, "accuracy": 100.0 * correct, "regularizer": reg}

    def end_epoch(self) -> EpochDecision:
        """Prunes on the host from rank 0's gates; returns the decision.

        DDP keeps the gates of all ranks bitwise equal already (same start, same averaged gradient); rank 0's
        gates are nevertheless broadcast and adopted, so the decision is identical on every rank by
        construction, not by the luck of identical arithmetic.
        """
        with torch.no_grad():
            self.ctx.broadcast_(self.alpha.data)
        decision = self.controller.end_epoch(self.alpha.detach().cpu().numpy().astype(np.float64))
        if decision.pruned:
            self.controller.apply_pruning(self.alpha, decision.pruned)
            self._sync_alive()
        return decision

    def state_dict(self) -> dict[str, Any]:
        return {
            "network": self.space.network.state_dict(),
            "weights_opt": self.weights_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "controller": self.controller.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.space.network.load_state_dict(state["network"])
        self._sync_alive()
        self.weights_opt.load_state_dict(state["weights_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
