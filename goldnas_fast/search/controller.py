r"""The host-side GOLD-NAS controller: pruning, the lambda schedule, plateau recording and stopping.

Once per epoch the search copies the gate logits ``alpha`` to the host and calls
:meth:`GoldNasController.end_epoch`, which applies Algorithm 1's end-of-epoch steps
(``docs/method/goldnas.md`` "Algorithm 1 at a glance", §3.5–§3.8):

1. **Prune** (repeat ``n0`` times; normalized weights :math:`w_o = \sigma_o / S_j` with :math:`S_j` over
   every live pair entering node ``j``, recomputed after every removal):

   a. prune every live pair with :math:`w_o \le \xi_{min}` (each counted in ``n``);
   b. among the live pairs, prune the one with the globally smallest :math:`w_o` if it is
      :math:`\le \xi_{max}` (counted once).

   A pruning never leaves a node without live pairs: in (a), if every live pair of a node is at or below
   ``xi_min``, its strongest one (largest ``alpha``, then lowest index) is kept; in (b), the sole live pair
   of a node is no candidate. Ties in (b) go to the lowest pair index.
2. **lambda**: if ``n >= n0``: :math:`\lambda \leftarrow \lambda / c_0`, :math:`\Delta \leftarrow \lambda_0`;
   else :math:`\Delta \leftarrow c_0 \Delta`, :math:`\lambda \leftarrow \lambda + \Delta`.
3. **Record**: if ``n == 0``: ``t += 1``; else: if ``t > t0``, record the architecture as it is *after*
   this epoch's pruning; ``t = 0``.
4. **Stop**: the stop rule is asked about the live mask after this epoch's pruning.

The decision is a pure function of the controller state and ``alpha`` (NumPy on the host, float64), so
ranks that decide on the same all-reduced ``alpha`` agree. The state is JSON-friendly
(:meth:`GoldNasController.state_dict`).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from goldnas_fast.errors import ConfigError
from goldnas_fast.nn.gate_layout import GateLayout, require_layout

__all__ = [
    "GoldNasConfig", "GoldNasController", "EpochDecision", "GateLayout", "StopRule",
    "normalized_weights_np", "prune", "flops_below", "one_op_per_edge", "any_of", "default_stop_rule",
    "apply_pruning", "surviving_per_edge",
]

StopRule = Callable[[np.ndarray], bool]
"""A stop criterion: gets the live mask after an epoch's pruning, returns whether to stop."""

ArchitectureFn = Callable[[np.ndarray, np.ndarray], Any]
"""Space-specific projection ``(alpha, alive) -> JSON-able architecture`` (e.g. per-edge surviving ops)."""


@dataclass(frozen=True)
class GoldNasConfig:
    """Hyper-parameters of the GOLD-NAS controller (defaults of ``docs/method/goldnas.md`` §3.1, §9).

    Attributes:
        xi_min: normalized weight at or below which a live pair is pruned at once.
        xi_max: normalized weight at or below which the globally weakest live pair may be pruned.
        n0: rounds of pruning per epoch; also the count that drives lambda.
        lambda0: base increment of lambda.
        c0: factor of the lambda schedule (``> 1``).
        lambda_init: lambda during the first epoch (0 in Algorithm 1).
        mu: weight of a pair's FLOPs (M) in its cost ``reg + mu * FLOPs`` (log regularizer).
        reg: constant part of every pair's cost.
        flops_min: stop once ``fixed + live FLOPs < flops_min`` (M); ``None``: no FLOPs criterion
            (the NAS-Bench-201 default; the CIFAR GOLD-NAS space uses 240).
        stop_one_op_per_edge: stop once every edge keeps at most one live pair (NAS-Bench-201 mode).
        stable_rounds: ``t0``; a plateau of more than ``t0`` epochs without pruning is recorded when it ends.
        prune_value: pruning subtracts this from the pair's logit.
        max_epochs: stop after this many epochs regardless (``None``: no limit).
    """

    xi_min: float = 0.01
    xi_max: float = 0.05
    n0: int = 4
    lambda0: float = 1e-5
    c0: float = 2.0
    lambda_init: float = 0.0
    mu: float = 0.0
    reg: float = 1.0
    flops_min: float | None = None
    stop_one_op_per_edge: bool = False
    stable_rounds: int = 3
    prune_value: float = 1e4
    max_epochs: int | None = None

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError("GoldNasConfig", name, expected, getattr(self, name))

        def num(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(name, "a finite number")
            return float(v)

        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise bad(name, f"an int >= {low}")

        if not 0 < num("xi_min") < 1:
            raise bad("xi_min", "in (0, 1)")
        if not self.xi_min <= num("xi_max") < 1:
            raise bad("xi_max", f"below 1 and at least the lower threshold {self.xi_min} (xi_min, --xi-min)")
        integer("n0", 1)
        if not num("lambda0") > 0:
            raise bad("lambda0", "> 0")
        if not num("c0") > 1:
            raise bad("c0", "> 1")
        if not num("lambda_init") >= 0:
            raise bad("lambda_init", ">= 0")
        if not num("mu") >= 0:
            raise bad("mu", ">= 0")
        if not num("reg") >= 0:
            raise bad("reg", ">= 0")
        if self.flops_min is not None and not num("flops_min") > 0:
            raise bad("flops_min", "None or > 0")
        if not isinstance(self.stop_one_op_per_edge, bool):
            raise bad("stop_one_op_per_edge", "a bool")
        integer("stable_rounds", 0)
        if not num("prune_value") > 0:
            raise bad("prune_value", "> 0")
        if self.max_epochs is not None:
            integer("max_epochs", 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GoldNasConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"GoldNasConfig: unknown fields {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class EpochDecision:
    """What :meth:`GoldNasController.end_epoch` decided for one epoch.

    Attributes:
        epoch: 0-based index of the epoch that just ended.
        pruned: indices of the pairs pruned this epoch, in pruning order.
        pruned_xi_min: how many of them fell under ``xi_min``; the rest were the weakest under ``xi_max``.
        n: ``len(pruned)``, the count that drives lambda.
        lambda_used: lambda during the epoch that ended.
        lam: lambda for the next epoch.
        delta_lambda: the increment after the update.
        t: the stable counter after the update.
        recorded: whether the architecture (after this epoch's pruning) was recorded.
        architecture: the recorded (or, when stopping, final) architecture; ``None`` otherwise.
        flops_m: FLOPs of the discrete network after this epoch's pruning (fixed part included).
        num_alive: live pairs after this epoch's pruning.
        stop: whether the search ends now.
        stop_reason: ``'flops_min'``, ``'one_op_per_edge'``, ``'custom'``, ``'exhausted'`` (every node has a
            single live pair, so nothing can ever be pruned again), ``'max_epochs'``, or ``None``.
    """

    epoch: int
    pruned: tuple[int, ...]
    pruned_xi_min: int
    n: int
    lambda_used: float
    lam: float
    delta_lambda: float
    t: int
    recorded: bool
    architecture: Any
    flops_m: float
    num_alive: int
    stop: bool
    stop_reason: str | None

    @property
    def n_pruned(self) -> int:
        """Alias of ``n``."""
        return self.n

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pruned"] = list(self.pruned)
        return d


# ----------------------------------------------------------------------------------------------- pruning

def normalized_weights_np(alpha: np.ndarray, node_index: np.ndarray, alive: np.ndarray,
                          num_nodes: int) -> np.ndarray:
    r""":math:`w_o = \sigma(\alpha_o)/S_j` on the host in float64 (0 for dead pairs), computed in log space
    so that very negative live logits still normalize (a node's sole live pair has ``w = 1`` exactly)."""
    log_sig = np.where(alive, -np.logaddexp(0.0, -alpha), -np.inf)
    shift = np.full(num_nodes, -np.inf)
    np.maximum.at(shift, node_index, log_sig)
    shift[~np.isfinite(shift)] = 0.0
    e = np.exp(log_sig - shift[node_index])
    s = np.bincount(node_index, weights=e, minlength=num_nodes)
    s[s == 0] = 1.0
    return e / s[node_index]


def prune(alpha: np.ndarray, alive: np.ndarray, layout: GateLayout, xi_min: float, xi_max: float,
          n0: int) -> tuple[list[int], int]:
    """The pruning rule of the module docstring (step 1). Does not modify its inputs.

    Returns:
        ``(pruned, count_xi_min)``: pruned pair indices in order (within one ``xi_min`` sweep, ascending),
        and how many of them were pruned by the ``xi_min`` rule.
    """
    alive = alive.copy()
    idx, num_nodes = layout.node_index, layout.num_nodes
    pruned: list[int] = []
    by_min = 0
    for _ in range(n0):
        w = normalized_weights_np(alpha, idx, alive, num_nodes)
        cand = alive & (w <= xi_min)
        if cand.any():
            live = np.bincount(idx[alive], minlength=num_nodes)
            hit = np.bincount(idx[cand], minlength=num_nodes)
            for j in np.flatnonzero((live > 0) & (hit == live)):
                members = np.flatnonzero(alive & (idx == j))
                keep = members[np.argmax(alpha[members])]  # argmax: first of equal maxima
                cand[keep] = False
            chosen = np.flatnonzero(cand)
            alive[chosen] = False
            pruned.extend(int(i) for i in chosen)
            by_min += len(chosen)
            w = normalized_weights_np(alpha, idx, alive, num_nodes)
        live = np.bincount(idx[alive], minlength=num_nodes)
        eligible = alive & (live[idx] > 1)
        if eligible.any():
            masked = np.where(eligible, w, np.inf)
            weakest = int(np.argmin(masked))  # first of equal minima
            if masked[weakest] <= xi_max:
                alive[weakest] = False
                pruned.append(weakest)
    return pruned, by_min


# ------------------------------------------------------------------------------------------- stop rules

def flops_below(layout: GateLayout, flops_min: float) -> StopRule:
    """Stop once ``fixed + live FLOPs < flops_min`` (``docs/method/goldnas.md`` §3.8)."""
    require_layout(layout, "flops_below")
    return lambda alive: layout.discrete_flops_m(alive) < flops_min


def one_op_per_edge(layout: GateLayout) -> StopRule:
    """Stop once every edge keeps at most one live pair (NAS-Bench-201 mode, ``docs/method/goldnas.md`` §9)."""
    require_layout(layout, "one_op_per_edge")
    edge = np.asarray(layout.edge, dtype=np.int64)

    def rule(alive: np.ndarray) -> bool:
        return int(np.bincount(edge[np.asarray(alive, bool)], minlength=1).max()) <= 1

    return rule


def any_of(*rules: StopRule) -> StopRule:
    """Stop once any of ``rules`` says so."""
    return lambda alive: any(rule(alive) for rule in rules)


def default_stop_rule(config: GoldNasConfig, layout: GateLayout) -> list[tuple[str, StopRule]]:
    """The named criteria enabled by ``config``: ``flops_min`` and/or ``one_op_per_edge``."""
    rules: list[tuple[str, StopRule]] = []
    if config.flops_min is not None:
        rules.append(("flops_min", flops_below(layout, config.flops_min)))
    if config.stop_one_op_per_edge:
        rules.append(("one_op_per_edge", one_op_per_edge(layout)))
    return rules


# -------------------------------------------------------------------------------------- device helpers

def apply_pruning(alpha: torch.Tensor, pruned: Sequence[int], prune_value: float = 1e4) -> None:
    """``alpha[pruned] -= prune_value`` in place, without autograd and without a host sync.

    The indices travel to the device in one copy; ``index_add_`` never reads anything back.
    """
    if alpha.dim() != 1:
        raise ValueError(f"apply_pruning: alpha must have shape (P,), got {tuple(alpha.shape)}")
    if len(pruned) == 0:
        return
    index = torch.as_tensor(list(pruned), dtype=torch.long)
    if int(index.min()) < 0 or int(index.max()) >= alpha.numel():
        raise ValueError(f"apply_pruning: pruned indices must be in [0, {alpha.numel()}), got {list(pruned)}")
    index = index.to(alpha.device, non_blocking=True)
    with torch.no_grad():
        alpha.index_add_(0, index, torch.full(index.shape, -float(prune_value), dtype=alpha.dtype,
                                              device=alpha.device))


def surviving_per_edge(alpha: np.ndarray, alive: np.ndarray, layout: GateLayout) -> dict[int, list[int]]:
    """Live pair indices on each edge, strongest (largest ``alpha``) first; ``[]`` for an empty edge.

    A building block for space-specific architecture projections (e.g. NAS-Bench-201 keeps the first).
    """
    require_layout(layout, "surviving_per_edge")
    alpha = np.asarray(alpha, dtype=np.float64)
    out: dict[int, list[int]] = {e: [] for e in layout.edge}
    for i in np.flatnonzero(np.asarray(alive, dtype=bool)):
        out[layout.edge[i]].append(int(i))
    for e in out:
        out[e].sort(key=lambda i: (-alpha[i], i))
    return out


# ------------------------------------------------------------------------------------------- controller

def _default_architecture(alpha: np.ndarray, alive: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(alive)]


@dataclass
class _State:
    lam: float
    delta_lambda: float
    t: int = 0
    epoch: int = 0
    stopped: bool = False
    stop_reason: str | None = None
    alive: list[bool] = field(default_factory=list)
    recorded: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None


class GoldNasController:
    """Host state of one GOLD-NAS search and its end-of-epoch decisions (module docstring).

    Args:
        config: the hyper-parameters.
        layout: the supernet's :class:`GateLayout`.
        stop_rule: a custom criterion ``alive -> bool`` (reason ``'custom'``), checked in addition to the
            criteria that ``config`` enables (``flops_min``, ``stop_one_op_per_edge``, ``max_epochs``).
        architecture: ``(alpha, alive) -> JSON-able`` space-specific projection used for recorded and final
            architectures; default: the list of live pair indices.

    Attributes (read-only by convention): ``lam``, ``delta_lambda``, ``t``, ``epoch``, ``alive`` (NumPy bool
    copy), ``recorded`` (list of dicts: ``epoch``, ``architecture``, ``alive``, ``flops_m``, ``lam``),
    ``history`` (one :meth:`EpochDecision.to_dict` per epoch), ``stopped``, ``stop_reason``, ``final``.
    """

    def __init__(self, config: GoldNasConfig, layout: GateLayout, stop_rule: StopRule | None = None,
                 architecture: ArchitectureFn | None = None) -> None:
        if not isinstance(config, GoldNasConfig):
            raise ValueError(f"GoldNasController: config must be a GoldNasConfig, got {type(config).__name__}")
        self.config = config
        self.layout = require_layout(layout, "GoldNasController")
        self._rules = default_stop_rule(config, self.layout)
        if stop_rule is not None:
            self._rules.append(("custom", stop_rule))
        self._architecture = architecture or _default_architecture
        self._s = _State(lam=config.lambda_init, delta_lambda=config.lambda0,
                         alive=[True] * self.layout.num_pairs)

    # -- read-only views
    @property
    def lam(self) -> float:
        """lambda for the next epoch."""
        return self._s.lam

    @property
    def delta_lambda(self) -> float:
        return self._s.delta_lambda

    @property
    def t(self) -> int:
        return self._s.t

    @property
    def epoch(self) -> int:
        """Number of epochs ended so far."""
        return self._s.epoch

    @property
    def alive(self) -> np.ndarray:
        return np.array(self._s.alive, dtype=bool)

    @property
    def recorded(self) -> list[dict[str, Any]]:
        return list(self._s.recorded)

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self._s.history)

    @property
    def stopped(self) -> bool:
        return self._s.stopped

    @property
    def stop_reason(self) -> str | None:
        return self._s.stop_reason

    @property
    def final(self) -> dict[str, Any] | None:
        return self._s.final

    def discrete_flops_m(self) -> float:
        """FLOPs (M) of the current discrete network, fixed part included."""
        return self.layout.discrete_flops_m(self.alive)

    # -- the decision
    def _check_alpha(self, alpha: Any) -> np.ndarray:
        if isinstance(alpha, torch.Tensor):
            raise ValueError("end_epoch: alpha must be a NumPy array on the host (copy it once per epoch: "
                             "alpha.detach().cpu().numpy())")
        a = np.asarray(alpha, dtype=np.float64)
        if a.shape != (self.layout.num_pairs,):
            raise ValueError(f"end_epoch: alpha must have shape ({self.layout.num_pairs},), got {a.shape}")
        alive = self.alive
        if not np.isfinite(a[alive]).all():
            bad = [int(i) for i in np.flatnonzero(alive & ~np.isfinite(a))]
            raise ValueError(f"end_epoch: alpha of live pairs must be finite; not finite at {bad[:10]}")
        return a

    def _stop(self, alive: np.ndarray, epochs_done: int) -> str | None:
        for name, rule in self._rules:
            if rule(alive):
                return name
        if (self.layout.live_per_node(alive) <= 1).all():
            return "exhausted"
        if self.config.max_epochs is not None and epochs_done >= self.config.max_epochs:
            return "max_epochs"
        return None

    def end_epoch(self, alpha: np.ndarray) -> EpochDecision:
        """Ends an epoch given the gate logits (host NumPy, shape ``(P,)``): prunes, updates lambda,
        records and tests for stopping. Apply the returned ``pruned`` to the device logits with
        :meth:`apply_pruning`."""
        if self._s.stopped:
            raise RuntimeError(f"end_epoch: the search already stopped ({self._s.stop_reason})")
        cfg, s = self.config, self._s
        a = self._check_alpha(alpha)
        pruned, by_min = prune(a, self.alive, self.layout, cfg.xi_min, cfg.xi_max, cfg.n0)
        alive = self.alive
        alive[pruned] = False
        n = len(pruned)

        lambda_used = s.lam
        if n >= cfg.n0:
            lam, delta = s.lam / cfg.c0, cfg.lambda0
        else:
            delta = s.delta_lambda * cfg.c0
            lam = s.lam + delta

        flops = self.layout.discrete_flops_m(alive)
        recorded = False
        arch = None
        t = s.t
        if n == 0:
            t += 1
        else:
            if t > cfg.stable_rounds:
                recorded = True
            t = 0
        epoch = s.epoch
        reason = self._stop(alive, epoch + 1)
        if recorded or reason is not None:
            arch = self._architecture(a, alive.copy())

        s.alive = alive.tolist()
        s.lam, s.delta_lambda, s.t, s.epoch = lam, delta, t, epoch + 1
        entry = {"epoch": epoch, "architecture": arch, "alive": [int(i) for i in np.flatnonzero(alive)],
                 "flops_m": flops, "lam": lambda_used}
        if recorded:
            s.recorded.append(entry)
        if reason is not None:
            s.stopped, s.stop_reason, s.final = True, reason, entry
        decision = EpochDecision(epoch=epoch, pruned=tuple(pruned), pruned_xi_min=by_min, n=n,
                                 lambda_used=lambda_used, lam=lam, delta_lambda=delta, t=t, recorded=recorded,
                                 architecture=arch, flops_m=flops, num_alive=int(alive.sum()),
                                 stop=reason is not None, stop_reason=reason)
        s.history.append(decision.to_dict())
        return decision

    def apply_pruning(self, alpha: torch.Tensor, pruned: Sequence[int]) -> None:
        """``alpha[pruned] -= config.prune_value`` in place (see :func:`apply_pruning`)."""
        if alpha.shape != (self.layout.num_pairs,):
            raise ValueError(f"apply_pruning: alpha must have shape ({self.layout.num_pairs},), "
                             f"got {tuple(alpha.shape)}")
        apply_pruning(alpha, pruned, self.config.prune_value)

    def alive_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The live mask as a bool tensor on ``device`` (one copy; call after each pruning)."""
        return torch.as_tensor(self.alive, dtype=torch.bool).to(device)

    # -- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """JSON-friendly state (config and layout fingerprint included for checking on load)."""
        s = self._s
        return {
            "version": 1,
            "config": self.config.to_dict(),
            "layout": self.layout.fingerprint(),
            "lam": s.lam, "delta_lambda": s.delta_lambda, "t": s.t, "epoch": s.epoch,
            "stopped": s.stopped, "stop_reason": s.stop_reason,
            "alive": list(s.alive),
            "recorded": [dict(r) for r in s.recorded],
            "history": [dict(h) for h in s.history],
            "final": None if s.final is None else dict(s.final),
        }

    def load_state_dict(self, state: dict[str, Any], strict_config: bool = True) -> None:
        """Restores :meth:`state_dict`. Raises ``ValueError`` if the layout differs, or (with
        ``strict_config``) if the saved hyper-parameters differ from ``self.config``."""
        if state.get("version") != 1:
            raise ValueError(f"load_state_dict: unsupported state version {state.get('version')!r}")
        if state["layout"] != self.layout.fingerprint():
            raise ValueError("load_state_dict: the state was saved for a different gate layout "
                             f"({state['layout'].get('num_pairs')} pairs, here {self.layout.num_pairs})")
        if strict_config:
            saved = GoldNasConfig.from_dict(state["config"]).to_dict()
            diff = sorted(k for k, v in self.config.to_dict().items() if saved[k] != v)
            if diff:
                raise ValueError(f"load_state_dict: saved config differs in {diff}; "
                                 "pass strict_config=False to resume with the new values")
        alive = [bool(a) for a in state["alive"]]
        if len(alive) != self.layout.num_pairs:
            raise ValueError(f"load_state_dict: alive must have {self.layout.num_pairs} entries")
        self._s = _State(lam=float(state["lam"]), delta_lambda=float(state["delta_lambda"]),
                         t=int(state["t"]), epoch=int(state["epoch"]), stopped=bool(state["stopped"]),
                         stop_reason=state["stop_reason"], alive=alive,
                         recorded=[dict(r) for r in state["recorded"]],
                         history=[dict(h) for h in state["history"]],
                         final=None if state["final"] is None else dict(state["final"]))
