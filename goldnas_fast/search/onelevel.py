"""The GOLD-NAS search loop (Algorithm 1): one-level training of weights and gates, pruning per epoch.

Per mini-batch: ``L = CE (+ 0.4 CE_aux) + lambda * R(alpha)``, one backward pass, the weight gradient
clipped to norm 5, then an SGD step for the gates and one for the weights (``docs/method/goldnas.md`` §3.2).
Per epoch, on the host and once: the gate logits are copied, the controller prunes, adapts lambda,
records the architecture at the end of a stable plateau and decides whether to stop. Nothing in the
per-step path reads a device value back, so a GPU runs without per-step synchronisation.

The steps run through a step runner (:mod:`goldnas_fast.search.gpu`): eagerly, or, with CUDA graphs,
replayed from one captured step that is re-captured after each pruning event (and after a change of
either optimizer's learning rate, which GOLD-NAS keeps constant). lambda changes every epoch, so the
captured step reads it from a device tensor updated in place, which computes the same float32 product
as the eager step's Python number.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from goldnas_fast.errors import ConfigError
from goldnas_fast.nn.cell import match_cell_weights_layout
from goldnas_fast.search.algorithm import Progress, SupernetSearch, epoch_line
from goldnas_fast.search.config import SupernetConfig, option, space_class_of
from goldnas_fast.search.controller import EpochDecision, GoldNasConfig, GoldNasController
from goldnas_fast.search.distributed import Context
from goldnas_fast.search.gpu import StepOptions
from goldnas_fast.search.resource import KINDS as RESOURCE_KINDS
from goldnas_fast.search.resource import ResourceTerm
from goldnas_fast.spaces.adapter import SearchSpace

if TYPE_CHECKING:
    from goldnas_fast.runs import RunDir

__all__ = ["OneLevelConfig", "GoldNasSearch", "GoldNasSearchConfig"]

SAMPLE_LAMBDA0 = 1e-3  # the embedded sample's epochs are a few steps long: lambda must grow faster


@dataclass
class OneLevelConfig:
    """Optimizer settings of the one-level search (defaults of ``docs/method/goldnas.md`` §3.1)."""

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
                raise ConfigError("OneLevelConfig", name, "> 0", getattr(self, name))
        if self.resource not in RESOURCE_KINDS:
            raise ConfigError("OneLevelConfig", "resource", "'log' or 'flops'", self.resource)


_GOLD, _ONE_LEVEL = GoldNasConfig(), OneLevelConfig()


@dataclasses.dataclass(frozen=True)
class GoldNasSearchConfig(SupernetConfig):
    """``goldnas-fast search --algo goldnas``: the supernet options plus the GOLD-NAS hyper-parameters,
    whose defaults are :class:`~goldnas_fast.search.controller.GoldNasConfig`'s and
    :class:`OneLevelConfig`'s, except ``lambda0`` on the embedded sample (:data:`SAMPLE_LAMBDA0`) and
    ``flops_min`` in a space that sets its own (``SearchSpace.flops_min``, e.g. the GOLD-NAS space's)."""

    algo = "goldnas"

    lambda0: float | None = option(None, "--lambda0")
    c0: float = option(_GOLD.c0, "--c0")
    n0: int = option(_GOLD.n0, "--n0")
    xi_min: float = option(_GOLD.xi_min, "--xi-min")
    xi_max: float = option(_GOLD.xi_max, "--xi-max")
    mu: float = option(_GOLD.mu, "--mu")
    flops_min: float | None = option(None, "--flops-min")
    resource: str = option(_ONE_LEVEL.resource, "--resource")
    lr_weights: float = option(_ONE_LEVEL.lr_weights, "--lr-weights")
    lr_alpha: float = option(_ONE_LEVEL.lr_alpha, "--lr-alpha")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.gold()
        self.one_level()

    @classmethod
    def context_defaults(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        space = space_class_of(given.get("space", cls.space))
        flops_min = space.flops_min if space is not None else None
        return {**super().context_defaults(given),
                "lambda0": SAMPLE_LAMBDA0 if given.get("data") is None else _GOLD.lambda0,
                "flops_min": _GOLD.flops_min if flops_min is None else flops_min}

    def gold(self) -> GoldNasConfig:
        """The controller's hyper-parameters."""
        return GoldNasConfig(xi_min=self.xi_min, xi_max=self.xi_max, n0=self.n0, lambda0=self.lambda0, c0=self.c0,
                             mu=self.mu, flops_min=self.flops_min)

    def one_level(self) -> OneLevelConfig:
        """The optimizer settings."""
        return OneLevelConfig(lr_weights=self.lr_weights, lr_alpha=self.lr_alpha, resource=self.resource)

    def record(self) -> dict[str, Any]:
        return {**super().record(), "lambda0": self.lambda0, "c0": self.c0, "n0": self.n0, "xi_min": self.xi_min,
                "xi_max": self.xi_max, "mu": self.mu, "flops_min": self.flops_min, "resource": self.resource,
                "lr_weights": self.lr_weights, "lr_alpha": self.lr_alpha}


class GoldNasSearch(SupernetSearch):
    """Runs GOLD-NAS on a :class:`~goldnas_fast.spaces.adapter.SearchSpace`.

    In a space with ``stop_one_op_per_edge`` (NAS-Bench-201) the search also stops once every edge keeps at
    most one operator (``docs/method/goldnas.md`` §9).

    Args:
        space: the supernet with sigmoid gates.
        gold: the pruning/lambda/recording hyper-parameters.
        opt: the optimizer settings.
        device: where the supernet runs.
        ctx: the distributed context (a single process by default).
        steps: precision and CUDA graphs (default: float32, eager).

    :meth:`build` makes one from a :class:`GoldNasSearchConfig` with its data loaders, for the search loop.
    """

    config_type = GoldNasSearchConfig

    def __init__(self, space: SearchSpace, gold: GoldNasConfig, opt: OneLevelConfig, device: torch.device,
                 ctx: Context | None = None, steps: StepOptions | None = None) -> None:
        self.space, self.opt, self.device = space, opt, device
        self.ctx = ctx or Context(device=device)
        self.step_options = steps or StepOptions()
        self.step_options.check(device, self.ctx.world_size)
        if space.stop_one_op_per_edge and not gold.stop_one_op_per_edge:
            gold = GoldNasConfig(**{**gold.to_dict(), "stop_one_op_per_edge": True})
        self.gold = gold
        net = space.network.to(device)
        match_cell_weights_layout(net, device.type)  # CUDA: the cells run channels_last, so do their weights
        self.alpha = space.alpha()
        self.layout = space.gate_layout()
        self.controller = GoldNasController(gold, self.layout)
        self.resource = ResourceTerm.from_config(self.layout, opt.resource, gold, device=device)
        self.weights_opt = torch.optim.SGD(net.weight_parameters(), lr=opt.lr_weights, momentum=opt.momentum,
                                           weight_decay=opt.weight_decay)
        self.alpha_opt = torch.optim.SGD([self.alpha], lr=opt.lr_alpha, momentum=opt.momentum,
                                         weight_decay=opt.weight_decay_alpha)
        self._module: torch.nn.Module | None = None
        self._weights: list[torch.nn.Parameter] = []
        # lambda as the step reads it: a Python number (eager) or a device tensor filled per epoch (graphed)
        self._lam: float | torch.Tensor = torch.zeros((), device=device) if self.step_options.graphed else 0.0
        self.steps = self.step_options.runner(self._step_fn, [self.alpha_opt, self.weights_opt], self._clip)
        self._sync_alive()
        self.loaders: list[Any] = []  # set by build(); run_epoch trains on loaders[0]
        self.epochs = 0
        self._images_per_epoch = 0

    @classmethod
    def build(cls, config: GoldNasSearchConfig, ctx: Context) -> GoldNasSearch:
        from goldnas_fast.search.supernet_setup import prepare_supernet
        from goldnas_fast.spaces import space_class

        setup = prepare_supernet(config, ctx, gate=space_class(config.space).sigmoid_gate)
        algo = cls(setup.space, config.gold(), config.one_level(), ctx.device, ctx=ctx, steps=config.steps())
        algo.attach(setup, config.epochs, ctx)
        return algo

    def progress_note(self) -> str | None:
        # host-side facts only: loss and accuracy would cost a device sync per step; the epoch line has them
        return (f"lambda {self.controller.lam:.2e} | surviving {int(self.controller.alive.sum())} | "
                f"supernet FLOPs {self.discrete_flops_m():.1f}M")

    def epoch_line(self, record: dict[str, Any]) -> str | None:
        # the searched supernet's discrete network, not the benchmark's evaluation network
        return epoch_line(record, "supernet FLOPs")

    def run_epoch(self, epoch: int, progress: Progress | None = None) -> dict[str, Any]:
        """One epoch of Algorithm 1: train on ``loaders[0]`` with the current lambda, then prune."""
        for loader in self.loaders:
            loader.set_epoch(epoch)
        lam = self.controller.lam
        stats = self.train_epoch(self.loaders[0], lam, progress=progress)
        decision = self.end_epoch()
        return {"epoch": epoch + 1, **stats, "lambda": lam, "next_lambda": self.controller.lam,
                "pruned": int(decision.n_pruned), "surviving": int(self.controller.alive.sum()),
                "flops_m": self.discrete_flops_m(), "arch": self.space.architecture(),
                "recorded": bool(decision.recorded), "stop": bool(decision.stop), "stop_reason": decision.stop_reason}

    def result(self, run_dir: RunDir, history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        """The recorded architectures (the ends of stable plateaus) and the final one."""
        from goldnas_fast.search.results import result_writer, stop_reason

        extra = {"epochs_run": len(history), "stop_reason": stop_reason(history)}
        write = result_writer(self.space.result_writer)
        return write(run_dir, run_dir.config, self.space.architecture(), history, seconds, extra=extra)

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
        self._weights = [p for p in self.space.network.weight_parameters() if p.requires_grad]
        self.steps.invalidate()  # other modules run now: a captured step is stale

    def train_epoch(self, batches: Iterable, lam: float,
                    progress: Callable[[dict[str, float]], None] | None = None) -> dict[str, float]:
        """One pass over ``batches``; returns mean loss, accuracy and regularizer (one host sync)."""
        self.space.network.train()
        self._weights = [p for p in self.space.network.weight_parameters() if p.requires_grad]
        if isinstance(self._lam, torch.Tensor):
            self._lam.fill_(lam)
        else:
            self._lam = lam
        totals = torch.zeros(3, device=self.device)  # loss, correct, regularizer (summed over images)
        seen = 0
        for images, labels in batches:
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            _, stats = self.steps(images, labels)
            totals += stats
            n = labels.numel()
            seen += n
            if progress is not None:
                progress({"n": n})
        totals = self.ctx.all_reduce_sum(totals)
        seen = self.ctx.all_reduce_sum(torch.tensor(float(seen), device=self.device))
        loss, correct, reg = (totals / seen.clamp_min(1)).cpu().tolist()
        return {"loss": loss, "accuracy": 100.0 * correct, "regularizer": reg}

    def _step_fn(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward of one step: ``(loss, [ce * n, correct, regularizer * n])``, all on the device.

        The regularizer reads the float32 gates outside autocast."""
        with self.step_options.autocast(self.device):
            ce, logits = self.space.loss(images, labels, module=self.module)
        reg = self.resource(self.alpha, self._alive_t)
        loss = ce + self._lam * reg
        n = labels.numel()
        return loss, torch.stack([ce.detach() * n, (logits.detach().argmax(1) == labels).sum(), reg.detach() * n])

    def _clip(self) -> None:
        torch.nn.utils.clip_grad_norm_(self._weights, self.opt.grad_clip)

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
