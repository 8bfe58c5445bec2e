"""NAS-Bench-201 supernet: backends and lean mode agree, DARTS/GOLD-NAS cell math, pruning, arch strings, FLOPs."""
from __future__ import annotations

import copy
import random

import pytest
import torch
from torch import nn

import goldnas_fast.ops
from goldnas_fast.nb201 import EDGES, OPS, cost, format_arch
from goldnas_fast.nb201.arch import to_ops
from goldnas_fast.nb201.blocks import ResNetBasicBlock
from goldnas_fast.nb201 import SearchNetwork
from goldnas_fast.nn import DAGCell
from tests.float_error import assert_as_accurate

HAS_NODE_SUM = callable(getattr(goldnas_fast.ops, "node_sum", None))
needs_node_sum = pytest.mark.skipif(not HAS_NODE_SUM, reason="goldnas_fast.ops.node_sum not available yet")


pytestmark = pytest.mark.usefixtures("single_thread")


def small_net(gate: str = "sigmoid", backend: str = "reference", C: int = 4, N: int = 1, **kw) -> SearchNetwork:
    torch.manual_seed(0)
    net = SearchNetwork(C=C, N=N, gate=gate, backend=backend, input_size=8, **kw)
    with torch.no_grad():
        net.alpha.normal_()
    return net


def random_mask(net: SearchNetwork, seed: int, keep: float = 0.5) -> list[bool]:
    """Random survivors among the computable pairs, at least one per node."""
    rng = random.Random(seed)
    alive = [rng.random() < keep and op != "none" for _, op in net.pairs]
    for node in (1, 2, 3):
        members = [p for p, (e, op) in enumerate(net.pairs) if EDGES[e][0] == node and op != "none"]
        if not any(alive[p] for p in members):
            alive[rng.choice(members)] = True
    return alive


def train_step(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    net.zero_grad(set_to_none=True)
    logits = net(x)
    (logits.square().mean() + logits.logsumexp(1).mean()).backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def grad_atol(grads: dict[str, torch.Tensor]) -> float:
    """The cell convs' biases feed an affine-free BN: their true gradient is 0 and what is computed is rounding
    noise proportional to the other gradients, hence an absolute tolerance scaled by the largest gradient.
    (Against a float64 run, both float32 backends err by up to ~1e-5 of the largest gradient; a wrong gate
    or entry errs by O(1).)"""
    return 5e-5 * max(float(g.abs().max()) for g in grads.values()) + 1e-6


def compare(net_a: nn.Module, net_b: nn.Module, x: torch.Tensor) -> None:
    out_a, grads_a = train_step(net_a, x)
    out_b, grads_b = train_step(net_b, x)
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    assert "alpha" in grads_a
    atol = grad_atol(grads_a)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=atol, msg=name)


def dense_forward(net: SearchNetwork, x: torch.Tensor) -> torch.Tensor:
    """Independent eager supernet forward: every node is sum over ALL candidates of w * op(x), as AutoDL's
    ``NAS201SearchCell.forward`` (``none`` is ``x.mul(0.)``), unless a pair is pruned (sigmoid gates)."""
    w = net.gate_values()
    x = net.stem(x)
    for cell in net.cells:
        if not isinstance(cell, DAGCell):
            x = cell(x)
            continue
        nodes = [x]
        for t in (1, 2, 3):
            terms = []
            for p, (e, op) in enumerate(net.pairs):
                target, s = EDGES[e]
                if target != t or not (net.alive[p] or op == "none"):
                    continue
                out = nodes[s].mul(0.0) if op == "none" else cell.candidates[f"{t}<-{s}:{op}"](nodes[s])
                terms.append(w[p] * out)
            nodes.append(sum(terms))
        x = nodes[3]
    return net.head(x)


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("gate, ops", [("sigmoid", OPS[1:]), ("softmax", OPS)])
def test_structure_pairs_and_parameters(gate, ops):
    torch.manual_seed(0)
    net = SearchNetwork(C=4, N=2, gate=gate, backend="reference")
    assert net.op_names == ops
    assert net.pairs == [(e, op) for e in range(6) for op in ops]
    assert net.num_pairs == 6 * len(ops) == net.gate_values().numel()
    if gate == "sigmoid":
        assert net.alpha.shape == (24,) and torch.equal(net.alpha, torch.zeros(24))
        assert torch.equal(net.gate_values(), torch.full((24,), 0.5))
        assert net.alive == [True] * 24
    else:
        assert net.alpha.shape == (6, 5) and 0 < net.alpha.abs().max() < 1e-2
        torch.testing.assert_close(net.gate_values().view(6, 5).sum(1), torch.ones(6))
        assert net.alive == [op != "none" for _, op in net.pairs]
    arch, weights = net.arch_parameters(), net.weight_parameters()
    assert arch == [net.alpha]
    ids = [id(p) for p in arch + weights]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in net.parameters()}
    # skeleton: 3N cells and 2 reductions, widths C, 2C, 4C
    kinds = [type(m) for m in net.cells]
    assert kinds == [DAGCell] * 2 + [ResNetBasicBlock] + [DAGCell] * 2 + [ResNetBasicBlock] + [DAGCell] * 2
    assert len(net.search_cells()) == 6
    assert net.head.classifier.in_features == 16
    for m in net.search_cells()[0].modules():
        if isinstance(m, nn.BatchNorm2d):
            assert not m.affine and not m.track_running_stats
        if isinstance(m, nn.Conv2d):
            assert m.bias is not None
    for m in net.cells[2].modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.affine and m.track_running_stats
    tracked = SearchNetwork(C=4, N=1, backend="reference", track_running_stats=True)
    assert all(m.track_running_stats for m in tracked.search_cells()[0].modules() if isinstance(m, nn.BatchNorm2d))
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert SearchNetwork(C=4, N=1, num_classes=120, backend="reference")(torch.randn(1, 3, 8, 8)).shape == (1, 120)


@pytest.mark.parametrize("kw, name", [
    ({"C": 0}, "C"), ({"C": 4.0}, "C"), ({"N": 0}, "N"), ({"num_classes": True}, "num_classes"),
    ({"gate": "relu"}, "gate"), ({"backend": "cuda"}, "backend"), ({"lean": 1}, "lean"),
    ({"track_running_stats": "no"}, "track_running_stats"), ({"input_size": 30}, "input_size"),
])
def test_bad_constructor_arguments(kw, name):
    with pytest.raises(ValueError, match=name):
        SearchNetwork(**{"C": 4, "N": 1, **kw})


def test_backend_and_lean_setters_reach_every_cell():
    net = small_net()
    net.backend, net.lean = "fused", True
    assert net.backend == "fused" and net.lean
    assert all(c.backend == "fused" and c.lean for c in net.search_cells())
    with pytest.raises(ValueError, match="backend"):
        net.backend = "cpu"
    with pytest.raises(ValueError, match="lean"):
        net.lean = "yes"


# ----------------------------------------------------------------------------- cell math
@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
@pytest.mark.parametrize("seed", [None, 3])
def test_reference_equals_dense_darts_sum(gate, seed):
    """The pruned, none-free cells compute the official dense sum (values and every gradient)."""
    net = small_net(gate)
    if seed is not None:
        net.set_alive(random_mask(net, seed))
    x = torch.randn(2, 3, 8, 8)

    class Dense(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return dense_forward(self.inner, x)

    dense = copy.deepcopy(net)
    out_a, grads_a = train_step(net, x)
    out_b, grads_b = train_step(Dense(dense), x)
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    assert {"inner." + k for k in grads_a} == set(grads_b)
    for k, g in grads_a.items():
        torch.testing.assert_close(g, grads_b["inner." + k], rtol=1e-4, atol=grad_atol(grads_a), msg=k)
    if gate == "softmax":  # 'none' acts through the softmax denominator only
        assert grads_a["alpha"][:, 0].abs().sum() > 0


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
@pytest.mark.parametrize("seed", [None, 5])
def test_lean_equals_non_lean_reference(gate, seed):
    net = small_net(gate)
    if seed is not None:
        net.set_alive(random_mask(net, seed))
    lean = copy.deepcopy(net)
    lean.lean = True
    compare(net, lean, torch.randn(2, 3, 8, 8))


@needs_node_sum
@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
@pytest.mark.parametrize("seed", [None, 11, 12])
@pytest.mark.parametrize("lean", [False, True])
def test_fused_equals_reference(gate, seed, lean):
    ref = small_net(gate, lean=lean)
    if seed is not None:
        ref.set_alive(random_mask(ref, seed))
    fused = copy.deepcopy(ref)
    fused.backend = "fused"
    fused.memory_format = "preserve"  # same layout, same convolution kernels: equal to float32 rounding
    assert fused.backend == "fused" and ref.backend == "reference"
    compare(ref, fused, torch.randn(2, 3, 8, 8))
    # The default runs CPU cells in channels_last, whose oneDNN kernels round differently (~3x the NCHW
    # error against float64, the same for the reference network in channels_last).
    fused.memory_format = "auto"
    assert_as_accurate(train_step, fused, copy.deepcopy(ref).to(memory_format=torch.channels_last), torch.randn(2, 3, 8, 8))


@needs_node_sum
def test_fused_equals_reference_full_width():
    torch.manual_seed(1)
    ref = SearchNetwork(C=16, N=1, backend="reference")
    with torch.no_grad():
        ref.alpha.normal_()
    ref.set_alive(random_mask(ref, 2, keep=0.7))
    fused = copy.deepcopy(ref)
    fused.backend = "fused"
    fused.memory_format = "preserve"
    compare(ref, fused, torch.randn(2, 3, 32, 32))
    fused.memory_format = "auto"
    layouts = []
    fused.search_cells()[0].register_forward_hook(
        lambda m, i, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last)))
    assert_as_accurate(train_step, fused, copy.deepcopy(ref).to(memory_format=torch.channels_last), torch.randn(2, 3, 32, 32))
    assert layouts == [True]


def test_memory_format_setter_reaches_every_cell():
    net = small_net(backend="fused")
    assert net.memory_format == "auto"
    net.memory_format = "preserve"
    assert all(c.memory_format == "preserve" for c in net.search_cells())
    with pytest.raises(ValueError, match="memory_format"):
        net.memory_format = "nhwc"


# ----------------------------------------------------------------------------- pruning
@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=needs_node_sum)])
def test_pruned_pairs_get_no_gradient_and_are_frozen(backend):
    net = small_net(backend=backend)
    mask = random_mask(net, 9)
    net.set_alive(mask)
    assert net.alive == mask
    _, grads = train_step(net, torch.randn(2, 3, 8, 8))
    for cell_index, cell in enumerate(net.cells):
        if not isinstance(cell, DAGCell):
            continue
        for p, (e, op) in enumerate(net.pairs):
            t, s = EDGES[e]
            for name, param in cell.candidates[f"{t}<-{s}:{op}"].named_parameters():
                full = f"cells.{cell_index}.candidates.{t}<-{s}:{op}.{name}"
                assert param.requires_grad == mask[p], full
                assert (full in grads) == mask[p], full
    # the gates of pruned pairs get no loss gradient either (sigmoid: no coupling between gates)
    assert torch.all(grads["alpha"][torch.tensor([not a for a in mask])] == 0)
    net.set_alive([True] * net.num_pairs)
    assert all(p.requires_grad for p in net.parameters())


def test_set_alive_checks_and_none_pairs():
    net = small_net("softmax")
    mask = [True] * 30
    net.set_alive(mask)  # 'none' entries are ignored: those pairs are never computed
    assert net.alive == [op != "none" for _, op in net.pairs]
    with pytest.raises(ValueError, match="alive"):
        net.set_alive([True] * 24)
    only_none_into_1 = [not (e == 0 and op != "none") for e, op in net.pairs]
    with pytest.raises(ValueError, match="node 1"):
        net.set_alive(only_none_into_1)
    sig = small_net("sigmoid")
    with pytest.raises(ValueError, match="node 3"):
        sig.set_alive([EDGES[e][0] != 3 for e, _ in sig.pairs])
    sig.set_alive(torch.tensor([True] * 24))
    assert sig.alive == [True] * 24


# ----------------------------------------------------------------------------- arch strings
def test_arch_string_sigmoid_hand_set():
    net = small_net("sigmoid")
    # per edge (rows) the alphas of skip, conv1x1, conv3x3, avgpool
    alpha = torch.tensor([[0.1, 0.5, 0.3, -1.0],  # 1<-0: conv1x1
                          [2.0, 0.5, 0.3, 2.5],  # 2<-0: avg_pool (but pruned below) -> skip
                          [0.0, 0.0, 0.0, 0.0],  # 2<-1: all pruned -> none
                          [-3.0, -2.0, -1.0, -4.0],  # 3<-0: conv3x3
                          [1.0, 1.0, 0.0, 0.0],  # 3<-1: tie -> first (skip)
                          [0.0, 0.0, 0.0, 5.0]])  # 3<-2: avg_pool
    with torch.no_grad():
        net.alpha.copy_(alpha.flatten())
    mask = [True] * 24
    mask[4 + 3] = False
    mask[8:12] = [False] * 4
    net.set_alive(mask)
    assert net.arch_string() == format_arch(
        ["nor_conv_1x1", "skip_connect", "none", "nor_conv_3x3", "skip_connect", "avg_pool_3x3"])


def test_arch_string_softmax_is_argmax_over_five_ops():
    net = small_net("softmax")
    want = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none"]
    alpha = torch.randn(6, 5) * 0.1
    for e, op in enumerate(want):
        alpha[e, OPS.index(op)] = 1.0
    with torch.no_grad():
        net.alpha.copy_(alpha)
    assert net.arch_string() == format_arch(want)
    # a pruned op is not eligible
    mask = [True] * 30
    mask[5 * 3 + 3] = False  # edge 3<-0, nor_conv_3x3
    net.set_alive(mask)
    second = OPS[int(torch.topk(alpha[3], 2).indices[1])]
    assert net.arch_string() == format_arch(want[:3] + [second] + want[4:])


# ----------------------------------------------------------------------------- FLOPs
@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_pair_flops_sum_to_the_benchmark_cost(gate):
    net = SearchNetwork(gate=gate, backend="reference")  # C = 16, N = 5, 10 classes, 32x32
    flops = net.pair_flops_m()
    assert len(flops) == net.num_pairs
    official = {0: 15.64737, 11: 113.95137, 284: 11.71521}  # docs/method/nasbench201.md §1.5
    rng = random.Random(0)
    for index in [0, 11, 284, 1835, 6111, 9930, 13714, 857] + rng.sample(range(15625), 20):
        ops = to_ops(index)
        kept = sum(f for (e, op), f in zip(net.pairs, flops) if op == ops[e])
        total = net.fixed_flops_m() + kept
        assert total == pytest.approx(cost(index).flops_m, rel=1e-12, abs=1e-9), index
        if index in official:
            assert total == pytest.approx(official[index], abs=1e-9)


def test_pair_flops_match_conv_macs_counted_at_run_time():
    """Per pair: k*k*C_in*C_out*H*W of its convs (no bias, benchmark rule) over all cells, by hooks."""
    net = SearchNetwork(C=4, N=2, num_classes=7, backend="reference", input_size=16)
    counted = [0] * net.num_pairs
    hooks = []
    for cell in net.search_cells():
        for p, (e, op) in enumerate(net.pairs):
            t, s = EDGES[e]
            for m in cell.candidates[f"{t}<-{s}:{op}"].modules():
                if isinstance(m, nn.Conv2d):
                    def hook(mod, inp, out, p=p):
                        k = mod.kernel_size[0] * mod.kernel_size[1]
                        counted[p] += k * mod.in_channels * mod.out_channels * out.shape[2] * out.shape[3]
                    hooks.append(m.register_forward_hook(hook))
    net(torch.randn(1, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert [c / 1e6 for c in counted] == pytest.approx(net.pair_flops_m(), rel=1e-12)
    assert any(counted) and not all(counted)
    arch = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_3x3"]
    kept = sum(f for (e, op), f in zip(net.pairs, net.pair_flops_m()) if op == arch[e])
    assert net.fixed_flops_m() + kept == pytest.approx(cost(arch, 7, 16, C=4, N=2).flops_m, rel=1e-12)
