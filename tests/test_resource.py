"""The resource regularizer: vectorized forms vs a slow loop reference, gradients, edge cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from goldnas_fast.search.controller import GoldNasConfig
from goldnas_fast.nn.gate_layout import GateLayout
from goldnas_fast.search.resource import (ResourceTerm, expected_flops, normalized_weights,
                                          regularizer)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def loop_log_reference(alpha, node, alive, flops, xi_min, reg, mu) -> float:
    """docs/method/goldnas.md §3.3 written out pair by pair (S_j over all live pairs entering node j)."""
    total = 0.0
    for j in sorted(set(node)):
        members = [i for i in range(len(alpha)) if node[i] == j and alive[i]]
        s = sum(_sig(alpha[i]) for i in members)
        w = {i: _sig(alpha[i]) / s for i in members}
        n_j = sum(1 for i in members if w[i] > xi_min)
        for i in members:
            if w[i] > xi_min:
                total += math.log(1 + n_j * w[i]) * (reg + mu * flops[i])
    return total


def random_layout(rng: np.random.Generator, cells: int = 3) -> GateLayout:
    """A GOLD-NAS-like layout: per cell 4 nodes with 2..5 incoming edges, 2 ops per edge."""
    node, edge, flops = [], [], []
    e = 0
    for c in range(cells):
        for j in range(4):
            for _ in range(j + 2):
                for op in range(2):
                    node.append(100 * c + j)  # non-contiguous global ids on purpose
                    edge.append(e)
                    flops.append(float(rng.uniform(0, 4)) if op else 0.0)
                e += 1
    return GateLayout(tuple(node), tuple(edge), tuple(flops), fixed_flops_m=166.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mu", [0.0, 0.7])
def test_log_form_matches_loop_reference(seed: int, mu: float) -> None:
    rng = np.random.default_rng(seed)
    layout = random_layout(rng)
    p = layout.num_pairs
    # Wide logits so that some normalized weights fall under xi_min; kill ~20% of the pairs.
    alpha = rng.normal(0, 3, size=p)
    alive = rng.random(p) > 0.2
    xi_min = 0.02
    term = ResourceTerm(layout, "log", xi_min=xi_min, reg=1.3, mu=mu, dtype=torch.float64)
    got = term(torch.tensor(alpha), torch.tensor(alive)).item()
    want = loop_log_reference(alpha.tolist(), layout.node, alive.tolist(), layout.flops_m, xi_min, 1.3, mu)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_log_form_some_pairs_fall_under_xi_min() -> None:
    # Node with 3 pairs where one is far weaker: it is excluded and n_j = 2.
    layout = GateLayout((0, 0, 0), (0, 0, 1), (0.0, 1.0, 2.0))
    alpha = torch.tensor([2.0, 2.0, -8.0], dtype=torch.float64)
    alive = torch.ones(3, dtype=torch.bool)
    s = 2 * _sig(2.0) + _sig(-8.0)
    assert _sig(-8.0) / s <= 0.01
    want = 2 * math.log(1 + 2 * _sig(2.0) / s)
    got = ResourceTerm(layout, "log").__call__(alpha, alive).item()
    assert got == pytest.approx(want, rel=1e-12)


def test_normalization_is_per_node_over_all_edges() -> None:
    # Two edges into node 0: S_0 sums both edges (the per-edge bug of docs/method/goldnas.md §3.9 would not).
    layout = GateLayout((0, 0, 0, 0), (0, 0, 1, 1), (0.0,) * 4)
    alpha = torch.tensor([0.0, 1.0, 2.0, -1.0], dtype=torch.float64)
    w = normalized_weights(alpha, torch.as_tensor(layout.node_index.copy()), torch.ones(4, dtype=torch.bool), 1)
    sig = torch.sigmoid(alpha)
    torch.testing.assert_close(w, sig / sig.sum())
    assert w.sum().item() == pytest.approx(1.0)


def test_dead_pairs_and_empty_nodes_contribute_nothing() -> None:
    layout = GateLayout((0, 0, 1, 1), (0, 0, 1, 1), (1.0, 2.0, 3.0, 4.0))
    alpha = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64, requires_grad=True)
    alive = torch.tensor([True, False, False, False])  # node 1 has no live pair
    r = ResourceTerm(layout, "log")(alpha, alive)
    assert r.item() == pytest.approx(math.log(2.0))  # single live pair: w = 1, n = 1
    r.backward()
    assert torch.isfinite(alpha.grad).all()
    assert alpha.grad.abs().max().item() == pytest.approx(0.0, abs=1e-12)  # w = 1 does not depend on alpha


def test_very_negative_live_logits_stay_finite_in_float32() -> None:
    layout = GateLayout((0, 0), (0, 1), (0.0, 0.0))
    alpha = torch.tensor([-200.0, -230.0], requires_grad=True)  # sigma underflows to 0 in float32
    r = ResourceTerm(layout, "log")(alpha, torch.ones(2, dtype=torch.bool))
    r.backward()
    assert math.isfinite(r.item()) and r.item() == pytest.approx(math.log(2.0), rel=1e-5)
    assert torch.isfinite(alpha.grad).all()


@pytest.mark.parametrize("seed", range(3))
def test_log_form_gradcheck(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    layout = random_layout(rng, cells=1)
    p = layout.num_pairs
    alpha = torch.tensor(rng.normal(0, 2, size=p), dtype=torch.float64, requires_grad=True)
    alive = torch.tensor(rng.random(p) > 0.25)
    term = ResourceTerm(layout, "log", xi_min=0.03, reg=1.0, mu=0.5, dtype=torch.float64)
    # Keep every normalized weight away from xi_min so finite differences do not cross the threshold.
    w = normalized_weights(alpha.detach(), term.node_index, alive, layout.num_nodes)
    assert ((w - 0.03).abs()[alive] > 1e-4).all()
    assert torch.autograd.gradcheck(lambda a: term(a, alive), (alpha,), eps=1e-6, atol=1e-7)


def test_flops_form_and_gradcheck() -> None:
    rng = np.random.default_rng(7)
    layout = random_layout(rng, cells=1)
    p = layout.num_pairs
    alpha = torch.tensor(rng.normal(0, 2, size=p), dtype=torch.float64, requires_grad=True)
    alive_np = rng.random(p) > 0.3
    alive = torch.tensor(alive_np)
    term = ResourceTerm(layout, "flops", include_fixed=True, dtype=torch.float64)
    want = 166.0 + sum(_sig(a) * f for a, f, ok in zip(alpha.tolist(), layout.flops_m, alive_np) if ok)
    assert term(alpha, alive).item() == pytest.approx(want, rel=1e-12)
    assert torch.autograd.gradcheck(lambda a: term(a, alive), (alpha,))
    flops_t = torch.tensor(layout.flops_m, dtype=torch.float64)
    assert expected_flops(alpha, alive, flops_t).item() == pytest.approx(want - 166.0, rel=1e-12)


def test_functional_regularizer_matches_resource_term() -> None:
    rng = np.random.default_rng(3)
    layout = random_layout(rng, cells=2)
    cfg = GoldNasConfig(mu=0.25, reg=0.5)
    alpha = torch.tensor(rng.normal(0, 2, size=layout.num_pairs))
    alive = torch.tensor(rng.random(layout.num_pairs) > 0.2)
    flops = torch.tensor(layout.flops_m, dtype=torch.float32)
    for kind in ("log", "flops"):
        want = ResourceTerm.from_config(layout, kind, cfg)(alpha.float(), alive)
        got = regularizer(kind, alpha.float(), layout.node, alive, flops, cfg)
        torch.testing.assert_close(got, want)
    got_t = regularizer("log", alpha.float(), torch.as_tensor(layout.node_index.copy()), alive, flops, cfg,
                        num_nodes=layout.num_nodes)
    torch.testing.assert_close(got_t, ResourceTerm.from_config(layout, "log", cfg)(alpha.float(), alive))


def test_bad_inputs_raise() -> None:
    layout = GateLayout((0, 0), (0, 1), (0.0, 0.0))
    with pytest.raises(ValueError, match="kind"):
        ResourceTerm(layout, "params")
    term = ResourceTerm(layout, "log")
    with pytest.raises(ValueError, match="alive"):
        term(torch.zeros(2), torch.ones(2))  # not bool
    with pytest.raises(ValueError, match="alpha"):
        term(torch.zeros(2, 1), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_nodes"):
        regularizer("log", torch.zeros(2), torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool),
                    torch.zeros(2), GoldNasConfig())


def test_layout_validation() -> None:
    with pytest.raises(ValueError, match="same length"):
        GateLayout((0, 0), (0,), (0.0, 0.0))
    with pytest.raises(ValueError, match="exactly one node"):
        GateLayout((0, 1), (5, 5), (0.0, 0.0))
    with pytest.raises(ValueError, match=r"flops_m\[1\]"):
        GateLayout((0, 0), (0, 1), (0.0, -1.0))
    with pytest.raises(ValueError, match="empty"):
        GateLayout((), (), ())
