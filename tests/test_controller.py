"""The GOLD-NAS controller on hand-made gate trajectories (docs/method/goldnas.md Algorithm 1, §3.2,
§3.5–§3.8, §9)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from goldnas_fast.search.controller import (GoldNasConfig, GoldNasController, apply_pruning,
                                            normalized_weights_np, one_op_per_edge, prune, surviving_per_edge)
from goldnas_fast.nn.gate_layout import GateLayout

BIG = 10.0  # a logit that keeps a pair comfortably alive


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def nb201_layout() -> GateLayout:
    """NAS-Bench-201: 6 edges x 4 ops; node 1 <- edge 0; node 2 <- edges 1, 2; node 3 <- edges 3, 4, 5."""
    edge_node = {0: 1, 1: 2, 2: 2, 3: 3, 4: 3, 5: 3}
    op_flops = (0.0, 1.0, 9.0, 0.0)
    pairs = [(e, o) for e in range(6) for o in range(4)]
    return GateLayout(tuple(edge_node[e] for e, _ in pairs), tuple(e for e, _ in pairs),
                      tuple(op_flops[o] for _, o in pairs), fixed_flops_m=10.0,
                      names=tuple(f"e{e}:op{o}" for e, o in pairs))


def flat_layout(nodes: int, per_node: int, flops: float = 1.0) -> GateLayout:
    """``nodes`` nodes, each with ``per_node`` pairs, one edge per pair."""
    node = tuple(j for j in range(nodes) for _ in range(per_node))
    return GateLayout(node, tuple(range(len(node))), (flops,) * len(node))


def weights_to_logits(w: list[float], scale: float = 0.5) -> np.ndarray:
    """Logits whose sigmoids are proportional to ``w`` (sigma = scale * w / max w)."""
    w = np.asarray(w, dtype=np.float64)
    sig = scale * w / w.max()
    return np.log(sig / (1 - sig))


# ------------------------------------------------------------------------------------------ config

def test_config_defaults_are_those_of_the_doc() -> None:
    c = GoldNasConfig()
    assert (c.xi_min, c.xi_max, c.n0, c.lambda0, c.c0, c.mu, c.reg) == (0.01, 0.05, 4, 1e-5, 2.0, 0.0, 1.0)
    assert c.flops_min is None and c.stable_rounds == 3 and c.prune_value == 1e4 and c.lambda_init == 0.0


@pytest.mark.parametrize("field,value", [
    ("xi_min", 0.0), ("xi_min", 1.0), ("xi_max", 0.005), ("xi_max", 1.0), ("n0", 0), ("n0", 2.0),
    ("n0", True), ("lambda0", 0.0), ("c0", 1.0), ("mu", -1.0), ("reg", -0.1), ("flops_min", 0.0),
    ("stable_rounds", -1), ("prune_value", 0.0), ("max_epochs", 0), ("lambda0", float("nan")),
    ("stop_one_op_per_edge", 1),
])
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        GoldNasConfig(**{field: value})


def test_config_dict_round_trip() -> None:
    c = GoldNasConfig(flops_min=240.0, mu=0.1)
    assert GoldNasConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match="unknown"):
        GoldNasConfig.from_dict({"eta_min": 0.01})


# ------------------------------------------------------------------------------------------ lambda

def test_lambda_sequence_when_nothing_is_pruned() -> None:
    ctl = GoldNasController(GoldNasConfig(), nb201_layout())
    alpha = np.zeros(24)
    lams = [ctl.end_epoch(alpha).lam for _ in range(4)]
    assert lams == pytest.approx([2e-5, 6e-5, 1.4e-4, 3.0e-4], rel=1e-12)  # docs/method/goldnas.md §3.2
    assert ctl.delta_lambda == pytest.approx(1.6e-4)
    assert ctl.history[0]["lambda_used"] == 0.0


def test_lambda_halves_and_increment_resets_when_n_reaches_n0() -> None:
    layout = flat_layout(nodes=1, per_node=10)
    ctl = GoldNasController(GoldNasConfig(n0=2), layout)
    quiet = np.zeros(10)
    for _ in range(3):
        ctl.end_epoch(quiet)
    assert ctl.lam == pytest.approx(1.4e-4)
    # Two pairs far under xi_min: n = 2 >= n0.
    alpha = quiet.copy()
    alpha[[3, 7]] = -20.0
    d = ctl.end_epoch(alpha)
    assert d.n == 2 and d.n_pruned == 2
    assert d.lam == pytest.approx(0.7e-4) and d.delta_lambda == 1e-5
    # Then nothing again: increment doubles from lambda0.
    assert ctl.end_epoch(alpha).lam == pytest.approx(0.7e-4 + 2e-5)


def test_lambda_grows_when_fewer_than_n0_are_pruned() -> None:
    ctl = GoldNasController(GoldNasConfig(), flat_layout(nodes=1, per_node=10))
    alpha = np.zeros(10)
    alpha[0] = -20.0
    d = ctl.end_epoch(alpha)
    assert d.n == 1 and d.lam == pytest.approx(2e-5)


# ------------------------------------------------------------------------------------------ pruning

def test_xi_min_prunes_every_weak_pair_at_once_and_counts_each() -> None:
    # One node with 10 pairs: 3 with normalized weight ~0.002 (<= xi_min), 7 strong.
    w = [1.0] * 7 + [0.015, 0.015, 0.015]
    alpha = weights_to_logits(w)
    ctl = GoldNasController(GoldNasConfig(), flat_layout(1, 10))
    wn = normalized_weights_np(alpha, ctl.layout.node_index, ctl.alive, 1)
    assert (wn[7:] <= 0.01).all() and (wn[:7] > 0.05).all()
    d = ctl.end_epoch(alpha)
    assert sorted(d.pruned) == [7, 8, 9] and d.pruned_xi_min == 3 and d.n == 3
    assert ctl.alive.tolist() == [True] * 7 + [False] * 3


def test_xi_max_prunes_only_the_global_weakest_per_round() -> None:
    # Two nodes; after normalization pair 1 (node 0) has 0.03, pair 5 (node 1) has 0.04: both <= xi_max.
    # One round (n0 = 1): only the globally weakest goes.
    alpha = np.array([logit(0.5), logit(0.5 * 0.03 / 0.97), BIG, BIG,
                      logit(0.5), logit(0.5 * 0.04 / 0.96)])
    layout = GateLayout((0, 0, 9, 9, 1, 1), (0, 1, 2, 3, 4, 5), (1.0,) * 6)
    alpha[2] = alpha[3] = logit(0.5)
    w = normalized_weights_np(alpha, layout.node_index, np.ones(6, bool), layout.num_nodes)
    assert w[1] == pytest.approx(0.03) and w[5] == pytest.approx(0.04)
    d = GoldNasController(GoldNasConfig(n0=1), layout).end_epoch(alpha)
    assert d.pruned == (1,) and d.pruned_xi_min == 0
    # Two rounds: the second weakest follows; a third round finds nothing under xi_max.
    d = GoldNasController(GoldNasConfig(n0=3), layout).end_epoch(alpha)
    assert d.pruned == (1, 5)


def test_xi_max_leaves_pairs_above_the_threshold() -> None:
    alpha = weights_to_logits([1.0, 1.0, 0.2])  # weakest normalized weight 0.2/2.2 ~ 0.09 > 0.05
    d = GoldNasController(GoldNasConfig(), flat_layout(1, 3)).end_epoch(alpha)
    assert d.n == 0 and d.pruned == ()


def test_normalization_is_recomputed_after_each_removal() -> None:
    # Node 0: 20 pairs. Pair 0 has normalized weight 0.045 at first (pruned by xi_max in round 1); after
    # that removal pair 1 (0.048 -> 0.048/0.955 ~ 0.0503) is above xi_max and must survive round 2,
    # which it would not if stale weights were used.
    w = [0.045, 0.048] + [(1 - 0.045 - 0.048) / 18] * 18
    alpha = weights_to_logits(w)
    d = GoldNasController(GoldNasConfig(n0=2), flat_layout(1, 20)).end_epoch(alpha)
    assert d.pruned == (0,)


def test_weakest_is_chosen_after_the_xi_min_sweep_of_the_same_round() -> None:
    # Pair 0 (w 0.008) goes by xi_min; then pair 1 (0.0497 -> 0.0497/0.992 ~ 0.0501) is above xi_max.
    w = [0.008, 0.0497] + [(1 - 0.008 - 0.0497) / 18] * 18
    d = GoldNasController(GoldNasConfig(n0=1), flat_layout(1, 20)).end_epoch(weights_to_logits(w))
    assert d.pruned == (0,) and d.pruned_xi_min == 1


def test_sole_live_pair_is_no_xi_max_candidate_even_with_a_permissive_threshold() -> None:
    # prune() itself does not validate xi_max < 1, so the explicit rule is what protects the last pair.
    layout = flat_layout(nodes=2, per_node=2)
    pruned, by_min = prune(np.array([0.0, 1.0, -1.0, 0.5]), np.ones(4, bool), layout, 0.01, 1.0, n0=5)
    assert pruned == [2, 0] and by_min == 0


def test_normalization_is_per_node_over_all_edges_not_per_edge() -> None:
    # Node 3 of NB201 takes edges 3, 4, 5. Make edge 3's ops and node 2's ops weak *relative to their node*:
    # pair (e3, op0) has sigma 0.02 against a node sum ~ 0.02 + 11 * 0.5 -> w ~ 0.0036 < xi_min.
    # Per edge (the docs/method/goldnas.md §3.9 bug would normalize by edge 3's own sum 0.02 + 3*0.5) it would be
    # 0.013 > xi_min and not prunable at once; and pair (e1, op0) would look weakest instead.
    layout = nb201_layout()
    alpha = np.full(24, logit(0.5))
    alpha[3 * 4 + 0] = logit(0.02)
    alpha[1 * 4 + 0] = logit(0.03)  # node 2: w = 0.03 / (0.03 + 7 * 0.5) ~ 0.0085 < xi_min too
    alpha[2 * 4 + 1] = logit(0.2)   # node 2 (edge 2): w = 0.2 / (0.03 + 6*0.5 + 0.2) ~ 0.062 > xi_max
    ctl = GoldNasController(GoldNasConfig(n0=1), layout)
    w = normalized_weights_np(alpha, layout.node_index, ctl.alive, layout.num_nodes)
    per_edge_e3 = 0.02 / (0.02 + 3 * 0.5)
    assert w[12] < 0.01 < per_edge_e3
    d = ctl.end_epoch(alpha)
    assert sorted(d.pruned) == [4, 12] and d.pruned_xi_min == 2


def test_pruning_is_global_across_nodes() -> None:
    # The weakest pair (normalized) lies in the second node; the first node's pairs are stronger.
    layout = flat_layout(nodes=2, per_node=5)
    alpha = np.concatenate([weights_to_logits([1, 1, 1, 1, 0.25]), weights_to_logits([1, 1, 1, 1, 0.15])])
    d = GoldNasController(GoldNasConfig(n0=1), layout).end_epoch(alpha)
    assert d.pruned == (9,)


def test_xi_max_ties_go_to_the_lowest_index() -> None:
    layout = flat_layout(nodes=2, per_node=2)
    alpha = np.array([BIG, -3.5, BIG, -3.5])  # pairs 1 and 3: identical normalized weights < xi_max
    w = normalized_weights_np(alpha, layout.node_index, np.ones(4, bool), 2)
    assert w[1] == w[3] < 0.05
    assert GoldNasController(GoldNasConfig(n0=1), layout).end_epoch(alpha).pruned == (1,)


def test_a_node_is_never_emptied() -> None:
    # NB201 node 1 has a single edge (4 ops). Three ops weak: they go; the last one stays even though its
    # sigma is tiny (normalized weight 1), also in later epochs with an even smaller sigma.
    layout = nb201_layout()
    alpha = np.full(24, logit(0.5))
    alpha[0:3] = -30.0
    alpha[3] = -5.0
    ctl = GoldNasController(GoldNasConfig(), layout)
    d = ctl.end_epoch(alpha)
    assert sorted(d.pruned) == [0, 1, 2]
    alpha[3] = -500.0  # sigma underflows in float64; still not pruned (and no 0/0)
    for _ in range(3):
        assert 3 not in ctl.end_epoch(alpha).pruned
    assert ctl.alive[3]


def test_xi_min_sweep_keeps_the_strongest_when_all_of_a_node_are_under_it() -> None:
    # With xi_min = 0.4 every pair of a 3-pair node with equal-ish weights is under it: keep the strongest.
    layout = flat_layout(nodes=1, per_node=3)
    alpha = np.array([0.0, 0.1, 0.1])
    pruned, by_min = prune(alpha, np.ones(3, bool), layout, xi_min=0.4, xi_max=0.45, n0=1)
    assert sorted(pruned) == [0, 2] and by_min == 2  # pair 1: largest alpha, first of the tie


def test_pruned_pairs_never_come_back() -> None:
    layout = flat_layout(nodes=1, per_node=4)
    ctl = GoldNasController(GoldNasConfig(), layout)
    alpha = np.array([0.0, 0.0, 0.0, -20.0])
    assert ctl.end_epoch(alpha).pruned == (3,)
    alpha[3] = 50.0  # a dead pair's logit, whatever it is, is ignored
    d = ctl.end_epoch(alpha)
    assert d.pruned == () and not ctl.alive[3]


def test_alpha_checks() -> None:
    ctl = GoldNasController(GoldNasConfig(), flat_layout(1, 3))
    with pytest.raises(ValueError, match="shape"):
        ctl.end_epoch(np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        ctl.end_epoch(np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="NumPy"):
        ctl.end_epoch(torch.zeros(3))


# ------------------------------------------------------------------------------------------ recording

def _pruning_epoch(alpha: np.ndarray, victim: int) -> np.ndarray:
    a = alpha.copy()
    a[victim] = -30.0
    return a


def test_plateau_recorded_only_after_more_than_t0_quiet_epochs_and_after_pruning() -> None:
    layout = flat_layout(nodes=1, per_node=10)
    ctl = GoldNasController(GoldNasConfig(), layout)  # t0 = 3
    alpha = np.zeros(10)
    # Exactly t0 = 3 quiet epochs, then a pruning: t = 3 is not > 3, nothing recorded.
    for _ in range(3):
        assert not ctl.end_epoch(alpha).recorded
    alpha = _pruning_epoch(alpha, 0)
    d = ctl.end_epoch(alpha)
    assert d.n == 1 and not d.recorded and d.t == 0
    # Four quiet epochs, then a pruning: recorded, with the architecture after this epoch's pruning.
    for k in range(4):
        assert ctl.end_epoch(alpha).t == k + 1
    alpha = _pruning_epoch(alpha, 5)
    d = ctl.end_epoch(alpha)
    assert d.recorded and d.t == 0 and d.epoch == 8
    assert d.architecture == [1, 2, 3, 4, 6, 7, 8, 9]
    rec = ctl.recorded
    assert len(rec) == 1 and rec[0]["epoch"] == 8 and rec[0]["alive"] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert rec[0]["flops_m"] == pytest.approx(8.0)


def test_architecture_callback_sees_the_live_mask_after_pruning() -> None:
    layout = nb201_layout()
    seen = []

    def arch(alpha: np.ndarray, alive: np.ndarray) -> list[int]:
        seen.append(alive.copy())
        return [ops[0] if ops else -1 for ops in surviving_per_edge(alpha, alive, layout).values()]

    ctl = GoldNasController(GoldNasConfig(stable_rounds=0), layout, architecture=arch)
    alpha = np.full(24, logit(0.5))
    alpha[1] = 3.0
    ctl.end_epoch(alpha)  # quiet: t = 1 > 0
    alpha[0] = -30.0
    d = ctl.end_epoch(alpha)
    assert d.recorded and not seen[-1][0]
    assert d.architecture == [1, 4, 8, 12, 16, 20]


# ------------------------------------------------------------------------------------------ stopping

def test_stop_when_every_edge_keeps_at_most_one_op() -> None:
    layout = nb201_layout()
    ctl = GoldNasController(GoldNasConfig(stop_one_op_per_edge=True, n0=1), layout)
    alpha = np.full(24, -30.0)
    alpha[[0, 5, 10, 15, 16, 23]] = 0.0  # edge 3 still has two ops (12..15: 15; 16 is edge 4)
    alpha[12] = 0.0
    # Round: xi_min removes all the -30 pairs; edge 3 keeps 12 and 15 -> not yet.
    d = ctl.end_epoch(alpha)
    assert not d.stop and ctl.alive.sum() == 7
    alpha[12] = -4.0  # now w(12) = sigma(-4)/(...) < xi_max in node 3
    d = ctl.end_epoch(alpha)
    assert d.pruned == (12,) and d.stop and d.stop_reason == "one_op_per_edge"
    assert ctl.stopped and ctl.final["alive"] == [0, 5, 10, 15, 16, 23]
    with pytest.raises(RuntimeError, match="stopped"):
        ctl.end_epoch(alpha)
    assert one_op_per_edge(layout)(ctl.alive)


def test_stop_on_flops_min_is_strict_and_counts_the_fixed_part() -> None:
    layout = flat_layout(nodes=1, per_node=5, flops=2.0)  # fixed 0 here
    layout = GateLayout(layout.node, layout.edge, layout.flops_m, fixed_flops_m=3.0)
    ctl = GoldNasController(GoldNasConfig(flops_min=9.0), layout)
    alpha = np.zeros(5)
    alpha[0] = -30.0
    d = ctl.end_epoch(alpha)  # 3 + 4 * 2 = 11
    assert d.flops_m == pytest.approx(11.0) and not d.stop
    alpha[1] = -30.0
    d = ctl.end_epoch(alpha)  # 3 + 3 * 2 = 9: not < 9
    assert not d.stop
    alpha[2] = -30.0
    d = ctl.end_epoch(alpha)  # 7 < 9
    assert d.stop and d.stop_reason == "flops_min" and d.architecture == [3, 4]


def test_custom_stop_rule_exhaustion_and_max_epochs() -> None:
    layout = flat_layout(nodes=2, per_node=2)
    ctl = GoldNasController(GoldNasConfig(), layout, stop_rule=lambda alive: alive.sum() <= 3)
    d = ctl.end_epoch(np.array([0.0, -30.0, 0.0, 0.0]))
    assert d.stop and d.stop_reason == "custom"
    # Without any rule: ends when nothing can ever be pruned again.
    ctl = GoldNasController(GoldNasConfig(), layout)
    d = ctl.end_epoch(np.array([0.0, -30.0, -30.0, 0.0]))
    assert d.stop and d.stop_reason == "exhausted"
    ctl = GoldNasController(GoldNasConfig(max_epochs=2), layout)
    assert not ctl.end_epoch(np.zeros(4)).stop
    assert ctl.end_epoch(np.zeros(4)).stop_reason == "max_epochs"


# ------------------------------------------------------------------------------------------ checkpointing

def _trajectory(steps: int, seed: int, p: int) -> list[np.ndarray]:
    """Gates drifting apart with noise, so pruning comes in bursts and pauses."""
    rng = np.random.default_rng(seed)
    drift = rng.normal(0, 0.35, size=p)
    return [drift * k + rng.normal(0, 0.1, size=p) for k in range(steps)]


def test_state_dict_round_trip_mid_run_gives_identical_decisions() -> None:
    layout = nb201_layout()
    cfg = GoldNasConfig(stop_one_op_per_edge=True, stable_rounds=1)
    traj = _trajectory(40, seed=5, p=24)
    ref = GoldNasController(cfg, layout)
    ref_decisions = []
    for a in traj:
        ref_decisions.append(ref.end_epoch(a))
        if ref_decisions[-1].stop:
            break
    assert sum(d.n for d in ref_decisions) > 5 and any(d.n == 0 for d in ref_decisions)
    cut = len(ref_decisions) // 2
    first = GoldNasController(cfg, layout)
    for a in traj[:cut]:
        first.end_epoch(a)
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    resumed = GoldNasController(cfg, layout)
    resumed.load_state_dict(state)
    for a, want in zip(traj[cut:], ref_decisions[cut:]):
        assert resumed.end_epoch(a) == want
    assert resumed.state_dict() == ref.state_dict()


def test_load_state_dict_rejects_other_layout_or_config() -> None:
    ctl = GoldNasController(GoldNasConfig(), nb201_layout())
    state = ctl.state_dict()
    with pytest.raises(ValueError, match="layout"):
        GoldNasController(GoldNasConfig(), flat_layout(2, 12)).load_state_dict(state)
    with pytest.raises(ValueError, match="xi_max"):
        GoldNasController(GoldNasConfig(xi_max=0.1), nb201_layout()).load_state_dict(state)
    GoldNasController(GoldNasConfig(xi_max=0.1), nb201_layout()).load_state_dict(state, strict_config=False)


def test_decisions_are_a_pure_function_of_state_and_alpha() -> None:
    layout = nb201_layout()
    a, b = GoldNasController(GoldNasConfig(), layout), GoldNasController(GoldNasConfig(), layout)
    for alpha in _trajectory(12, seed=9, p=24):
        da = a.end_epoch(alpha.copy())
        db = b.end_epoch(alpha.copy())
        assert da == db
        if da.stop:
            break


# ------------------------------------------------------------------------------------------ device helper

def test_apply_pruning_subtracts_prune_value_without_autograd() -> None:
    alpha = torch.zeros(6, requires_grad=True)
    ctl = GoldNasController(GoldNasConfig(prune_value=100.0), flat_layout(2, 3))
    ctl.apply_pruning(alpha, [1, 4])
    assert alpha.tolist() == [0.0, -100.0, 0.0, 0.0, -100.0, 0.0]
    assert alpha.grad_fn is None and alpha.requires_grad
    apply_pruning(alpha, [])
    with pytest.raises(ValueError, match="indices"):
        apply_pruning(alpha, [6])
    with pytest.raises(ValueError, match="shape"):
        ctl.apply_pruning(torch.zeros(5), [0])
