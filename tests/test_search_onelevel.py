"""GOLD-NAS one-level loop on a tiny NAS-Bench-201 supernet: one update of gates and weights per batch,
host-side pruning applied to the gates and the network, frozen pruned operators, exact state round trip."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from goldnas_fast.search.controller import GoldNasConfig
from goldnas_fast.search.onelevel import GoldNasSearch, OneLevelConfig
from goldnas_fast.spaces import make_space


pytestmark = pytest.mark.usefixtures("single_thread")


def make_search(seed: int = 0, resource: str = "log", **gold) -> GoldNasSearch:
    torch.manual_seed(seed)
    space = make_space("nb201", gate="sigmoid", C=4, N=1, backend="reference")
    return GoldNasSearch(space, GoldNasConfig(**gold), OneLevelConfig(resource=resource), torch.device("cpu"))


def batches(n: int = 2, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


def test_train_epoch_updates_gates_and_weights_from_the_same_batches() -> None:
    search = make_search()
    alpha0 = search.alpha.detach().clone()
    weights0 = [p.detach().clone() for p in search.space.network.weight_parameters()]
    seen = []
    stats = search.train_epoch(batches(), lam=0.0, progress=lambda info: seen.append(info["n"]))
    assert seen == [8, 8]
    assert set(stats) >= {"loss", "accuracy", "regularizer"}
    assert np.isfinite(stats["loss"]) and 0 <= stats["accuracy"] <= 100
    assert not torch.equal(search.alpha.detach(), alpha0), "gates learn from the training loss (one level)"
    assert any(not torch.equal(p.detach(), w) for p, w in zip(search.space.network.weight_parameters(), weights0))


def test_flops_resource_pushes_costly_gates_down() -> None:
    """Expected-FLOPs term with a huge lambda: every convolution's gate logit decreases."""
    search = make_search(resource="flops")
    alpha0 = search.alpha.detach().clone()
    search.train_epoch(batches(1), lam=1e4)
    conv = [p for p, (_, op) in enumerate(search.space.network.pairs) if op.startswith("nor_conv")]
    assert (search.alpha.detach()[conv] < alpha0[conv]).all()


def test_log_resource_sparsifies_within_a_node() -> None:
    """The log term is largest for equal weights: a huge lambda widens the lead of a node's strongest gate."""
    search = make_search(resource="log")
    node1 = [p for p, (edge, _) in enumerate(search.space.network.pairs) if edge == 0]  # edge 0 -> node 1 alone
    with torch.no_grad():
        search.alpha[node1[0]] = 1.0
    gap0 = search.alpha.detach()[node1[0]] - search.alpha.detach()[node1[1:]]
    search.train_epoch(batches(1), lam=1e3)
    gap = search.alpha.detach()[node1[0]] - search.alpha.detach()[node1[1:]]
    assert (gap > gap0).all()


def test_end_epoch_prunes_gates_and_network() -> None:
    search = make_search()
    pairs = search.space.network.pairs
    # two weak pairs entering node 3 (edges 3, 4, 5 enter it): normalized weights far below xi_min
    weak = [p for p, (edge, _) in enumerate(pairs) if edge in (3, 4)][:2]
    with torch.no_grad():
        search.alpha[weak] = -20.0
    before = search.alpha.detach().clone()
    decision = search.end_epoch()
    assert sorted(decision.pruned) == sorted(weak)
    assert decision.n == 2 and not decision.stop
    alive = search.controller.alive
    assert [bool(a) for a in search.space.network.alive] == alive.tolist()
    assert not alive[weak].any() and alive.sum() == len(pairs) - 2
    prune = search.controller.config.prune_value
    expected = before.clone()
    expected[weak] -= prune
    assert torch.equal(search.alpha.detach(), expected)
    assert search.discrete_flops_m() == pytest.approx(search.controller.discrete_flops_m())


def test_pruned_operators_stay_frozen() -> None:
    search = make_search()
    pairs = search.space.network.pairs
    weak = [p for p, (edge, op) in enumerate(pairs) if edge == 5 and op == "nor_conv_3x3"]
    with torch.no_grad():
        search.alpha[weak] = -30.0
    assert list(search.end_epoch().pruned) == weak
    net = search.space.network
    frozen = {n: p.detach().clone() for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen, "pruned operators' weights are frozen"
    alpha_pruned = search.alpha.detach()[weak].clone()
    search.train_epoch(batches(), lam=0.1)
    for name, p in net.named_parameters():
        if name in frozen:
            assert torch.equal(p.detach(), frozen[name]), name
    # a pruned gate is no longer computed; only the resource term (masked to live pairs) could move it
    assert torch.equal(search.alpha.detach()[weak], alpha_pruned)


def test_state_dict_round_trip_continues_exactly() -> None:
    """A fresh search loaded from ``state_dict`` continues bit for bit like the original."""
    original = make_search(seed=0, lambda0=0.5)
    for epoch in range(3):
        original.train_epoch(batches(seed=epoch), original.controller.lam)
        original.end_epoch()
    state = copy.deepcopy(original.state_dict())
    restored = make_search(seed=99, lambda0=0.5)  # other initial weights: everything must come from the state
    restored.load_state_dict(state)
    assert restored.controller.alive.tolist() == original.controller.alive.tolist()
    assert restored.space.network.alive == original.space.network.alive
    for s in (original, restored):
        torch.manual_seed(7)
        s.train_epoch(batches(seed=3), s.controller.lam)
        s.end_epoch()
    a, b = original.state_dict(), restored.state_dict()
    for key, value in a["network"].items():
        assert torch.equal(value, b["network"][key]), key
    assert a["controller"] == b["controller"]
    assert str(a["weights_opt"]) == str(b["weights_opt"]) and str(a["alpha_opt"]) == str(b["alpha_opt"])


def test_one_level_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="lr_alpha"):
        OneLevelConfig(lr_alpha=0.0)
    with pytest.raises(ValueError, match="resource"):
        OneLevelConfig(resource="params")
