"""The GOLD-NAS space: operators and costs, super-network backends and pruning, genotypes, re-training network."""
from __future__ import annotations

import copy
import json
import math
import random

import pytest
import torch
from torch import nn

import goldnas_fast.ops
from goldnas_fast.nn.flops import count_macs
from goldnas_fast.spaces.goldnas import (CELL_EDGES, DEFAULT_OPS, OPS, Genotype, GoldNasSearchNetwork, build_network,
                                         count_architectures, network_cost, op_flops, op_params)
from goldnas_fast.spaces.goldnas.network import RetrainCell
from goldnas_fast.spaces.goldnas.ops import make_op
from tests.float_error import assert_as_accurate

HAS_NODE_SUM = callable(getattr(goldnas_fast.ops, "node_sum", None))
needs_node_sum = pytest.mark.skipif(not HAS_NODE_SUM, reason="goldnas_fast.ops.node_sum not available yet")


pytestmark = pytest.mark.usefixtures("single_thread")


def small_net(ops=DEFAULT_OPS, backend="reference", **kw) -> GoldNasSearchNetwork:
    torch.manual_seed(0)
    return GoldNasSearchNetwork(C=8, layers=5, num_classes=10, ops=ops, backend=backend, input_size=16, **kw)


def random_mask(net: GoldNasSearchNetwork, seed: int, keep: float = 0.4) -> list[bool]:
    """Random survivors with at least one pair per node."""
    rng = random.Random(seed)
    alive = [rng.random() < keep for _ in range(net.num_pairs)]
    by_node: dict[int, list[int]] = {}
    for p, n in enumerate(net.pair_node()):
        by_node.setdefault(n, []).append(p)
    for pairs in by_node.values():
        if not any(alive[p] for p in pairs):
            alive[rng.choice(pairs)] = True
    return alive


def train_step(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    net.zero_grad(set_to_none=True)
    logits, aux = net(x)
    loss = logits.square().mean() + 0.4 * aux.square().mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return torch.cat([logits, aux], 1).detach(), grads


# ----------------------------------------------------------------------------- operators and costs
@pytest.mark.parametrize("name", [o for o in OPS])
@pytest.mark.parametrize("stride", [1, 2])
def test_op_flops_and_params_match_the_module(name, stride):
    C, H = 6, 8
    for search in (True, False):
        for affine in (True, False):
            op = make_op(name, C, stride, affine, search).eval()
            assert sum(p.numel() for p in op.parameters()) == op_params(name, C, stride, affine, search)
            out = op(torch.randn(1, C, H, H))
            assert out.shape == (1, C, H // stride, H // stride)
            assert count_macs(op, torch.zeros(1, C, H, H)) == op_flops(name, C, stride, H, H)


def test_pair_flops_of_a_conv_op_equal_a_hook_count_on_the_op_alone():
    net = small_net(ops=("skip_connect", "sep_conv_5x5", "dil_conv_3x3"))
    flops = net.pair_flops_m()
    sides = {0: 16, 1: 8, 2: 8, 3: 4, 4: 4}  # side of each cell's output at input 16 (reductions at 1, 3)
    for p, (c, e, name) in enumerate(net.pairs):
        if name == "skip_connect" and flops[p] == 0:
            continue
        s, _ = CELL_EDGES[e]
        reduction = c in net.reductions
        side_in = 2 * sides[c] if reduction and s < 2 else sides[c]
        module = net.cells[c].pair_modules[p % net._per_cell]
        C = net.C * 2 ** sum(c >= r for r in net.reductions)
        macs = count_macs(module.eval(), torch.zeros(1, C, side_in, side_in))
        assert flops[p] == pytest.approx(macs * 1e-6, rel=0, abs=1e-12), (c, e, name)


def test_pair_flops_at_32x32_equal_the_unofficial_formula():
    """docs/method/goldnas.md §3.4: sep_conv_3x3 = 2 (C0^2 32^2 + 9 32^2 C0^2 / C) 1e-6;
    reduce skip = C0^2 32^2 1e-6."""
    C0 = 36
    net = GoldNasSearchNetwork(C=C0, layers=5, backend="reference", auxiliary=False)
    for f, (c, e, name) in zip(net.pair_flops_m(), net.pairs):
        C = C0 * 2 ** sum(c >= r for r in net.reductions)
        if name == "sep_conv_3x3":
            assert f == pytest.approx(2 * (C0 ** 2 * 32 ** 2 + 9 * 32 ** 2 * C0 ** 2 / C) * 1e-6, rel=1e-12)
        elif c in net.reductions and CELL_EDGES[e][0] < 2:
            assert f == pytest.approx(C0 ** 2 * 32 ** 2 * 1e-6, rel=1e-12)
        else:
            assert f == 0
    assert {round(f, 2) for f in net.pair_flops_m() if f} == {3.32, 2.99, 2.82, 1.33}  # §3.4 values


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_network_hook_count_equals_fixed_plus_surviving_pairs(seed):
    net = small_net(ops=("skip_connect", "sep_conv_3x3", "max_pool_3x3")).eval()
    if seed is not None:
        net.set_alive(random_mask(net, seed))
    macs = count_macs(net, torch.zeros(1, 3, 16, 16))
    assert net.discrete_flops_m() == pytest.approx(macs * 1e-6, rel=1e-12)
    alive_sum = sum(f for f, a in zip(net.pair_flops_m(), net.alive) if a)
    assert net.discrete_flops_m() == pytest.approx(net.fixed_flops_m() + alive_sum, rel=1e-12)


def test_expected_flops():
    net = small_net()
    full = net.fixed_flops_m() + sum(net.pair_flops_m())
    assert net.expected_flops_m().item() == pytest.approx(net.fixed_flops_m() + 0.5 * sum(net.pair_flops_m()))
    with torch.no_grad():
        net.alpha.fill_(40.0)  # sigmoid == 1 in float32
    assert net.expected_flops_m().item() == pytest.approx(full, rel=1e-6)
    assert net.discrete_flops_m() == pytest.approx(full, rel=1e-12)
    with torch.no_grad():
        net.alpha.normal_()
    net.expected_flops_m().backward()
    sig = torch.sigmoid(net.alpha.detach()).double()
    want = sig * (1 - sig) * torch.tensor(net.pair_flops_m(), dtype=torch.float64)
    torch.testing.assert_close(net.alpha.grad.double(), want, rtol=1e-5, atol=1e-9)
    # pruned pairs cost nothing in either count
    mask = random_mask(net, 3)
    net.set_alive(mask)
    alive_sum = sum(f for f, a in zip(net.pair_flops_m(), mask) if a)
    assert net.expected_flops_m().item() == pytest.approx(
        net.fixed_flops_m() + sum(s * f for s, f, a in zip(sig.tolist(), net.pair_flops_m(), mask) if a), rel=1e-5)
    assert net.discrete_flops_m() == pytest.approx(net.fixed_flops_m() + alive_sum)


def test_fixed_flops_of_the_default_network_against_the_doc():
    """docs/method/goldnas.md §3.4: an independent count of the fixed part gives about 164 M (code: 166.02)."""
    net = GoldNasSearchNetwork(backend="reference")
    assert 163 < net.fixed_flops_m() < 166.02
    assert sum(net.pair_flops_m()) == pytest.approx(613, abs=1)  # "about 613 M of searchable cost"
    assert net.num_pairs == 14 * 14 * 2


def test_pair_params_and_fixed_params_partition_the_weights():
    net = small_net(ops=("skip_connect", "sep_conv_3x3", "dil_conv_5x5"))
    aux = sum(p.numel() for p in net.auxiliary_head.parameters())
    total = sum(p.numel() for p in net.weight_parameters())
    assert sum(net.pair_params()) + net.fixed_params() + aux == total
    for (c, e, name), n in zip(net.pairs, net.pair_params()):
        stride = 2 if c in net.reductions and CELL_EDGES[e][0] < 2 else 1
        C = net.C * 2 ** sum(c >= r for r in net.reductions)
        assert n == op_params(name, C, stride, affine=False, search=True)


def test_candidate_counts_from_the_doc():
    """docs/method/goldnas.md §1.4."""
    assert count_architectures(1, 2) == 246_517_425 == 15 * 63 * 255 * 1023
    assert math.log10(count_architectures(14)) == pytest.approx(117.5, abs=0.05)
    assert math.log10(count_architectures(20)) == pytest.approx(167.8, abs=0.05)
    assert math.log10(count_architectures(19)) == pytest.approx(159.4, abs=0.05)


# ----------------------------------------------------------------------------- super-network structure
def test_structure_and_flatten_order():
    net = small_net(ops=("skip_connect", "sep_conv_3x3"))
    assert net.num_pairs == 5 * 14 * 2 and net.alpha.shape == (140,)
    assert torch.all(net.alpha == 0) and torch.all(net.gate_values() == 0.5)
    assert net.pairs[:4] == [(0, 0, "skip_connect"), (0, 0, "sep_conv_3x3"), (0, 1, "skip_connect"),
                             (0, 1, "sep_conv_3x3")]
    assert net.pair_node()[:6] == [0, 0, 0, 0, 1, 1] and net.pair_node()[-1] == 5 * 4 - 1
    assert net.pair_edge()[:6] == [0, 0, 1, 1, 2, 2] and net.pair_edge()[-1] == 5 * 14 - 1
    assert CELL_EDGES == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3), (0, 4), (1, 4), (2, 4), (3, 4),
                          (0, 5), (1, 5), (2, 5), (3, 5), (4, 5))
    assert net.reductions == (1, 3)
    ids = {id(p) for p in net.weight_parameters()}
    assert id(net.alpha) not in ids and len(ids) + 1 == len(list(net.parameters()))
    # skip_connect at stride 1 is identity + BN(affine=False), a module and not the fused Identity
    skip = net.cells[0].pair_modules[0]
    assert isinstance(skip.bn, nn.BatchNorm2d) and not skip.bn.affine


def test_twenty_cells_narrow():
    net = GoldNasSearchNetwork(C=16, layers=20, backend="reference", auxiliary=False)
    assert net.reductions == (6, 13) and net.aux_cell == 13 and net.num_pairs == 20 * 14 * 2
    widths = [cell.preprocess1[1].out_channels for cell in net.cells]
    assert widths == [16] * 6 + [32] * 7 + [64] * 7


def test_forward_shapes_and_aux_only_in_training():
    net = small_net()
    x = torch.randn(2, 3, 16, 16)
    logits, aux = net(x)
    assert logits.shape == aux.shape == (2, 10)
    net.eval()
    logits, aux = net(x)
    assert aux is None and logits.shape == (2, 10)
    no_aux = small_net(auxiliary=False)
    assert no_aux(x)[1] is None and no_aux.auxiliary_head is None
    assert GoldNasSearchNetwork(C=4, layers=3, backend="reference", input_size=32)(torch.randn(2, 3, 32, 32))[1].shape \
        == (2, 10)  # the exact DARTS 8x8 head path
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.randn(1, 3, 18, 18))


def test_set_alive_validation_and_pruned_ops_are_skipped():
    net = small_net()
    with pytest.raises(ValueError, match="expected 140"):
        net.set_alive([True] * 139)
    mask = [True] * net.num_pairs
    for p, n in enumerate(net.pair_node()):
        if n == 2 * 4 + 2:  # cell 2, node 4
            mask[p] = False
    with pytest.raises(ValueError, match="cell 2, node 4"):
        net.set_alive(mask)
    assert all(net.alive)  # unchanged after the error
    mask = random_mask(net, 5)
    net.set_alive(mask)
    assert net.alive == mask
    called = set()
    modules = [m for cell in net.cells for m in cell.pair_modules]
    handles = [m.register_forward_hook(lambda mod, i, o, k=k: called.add(k)) for k, m in enumerate(modules)]
    logits, aux = net(torch.randn(2, 3, 16, 16))
    for h in handles:
        h.remove()
    assert called == {p for p, a in enumerate(mask) if a}
    (logits.sum() + aux.sum()).backward()
    for p, (m, a) in enumerate(zip(modules, mask)):
        for w in m.parameters():
            assert w.requires_grad == a and (w.grad is not None) == a, p
    assert torch.all(net.alpha.grad[torch.tensor(mask)] != 0) and torch.all(net.alpha.grad[~torch.tensor(mask)] == 0)


def test_none_pairs_run_only_where_a_node_has_nothing_else():
    net = small_net(ops=("none", "skip_connect", "sep_conv_3x3"))
    mask = random_mask(net, 21)
    node_of = net.pair_node()
    only_none = {n for n in set(node_of)
                 if all(net.pairs[p][2] == "none" for p in range(net.num_pairs) if mask[p] and node_of[p] == n)}
    assert only_none  # the seed leaves some node with 'none' alone
    net.set_alive(mask)
    assert net.alive == mask
    modules = [m for cell in net.cells for m in cell.pair_modules]
    called = set()
    handles = [m.register_forward_hook(lambda mod, i, o, k=k: called.add(k)) for k, m in enumerate(modules)]
    net(torch.randn(2, 3, 16, 16))
    for h in handles:
        h.remove()
    assert called == {p for p, a in enumerate(mask) if a and (net.pairs[p][2] != "none" or node_of[p] in only_none)}


def test_constructor_errors():
    with pytest.raises(ValueError, match="unknown operator 'conv_9x9'"):
        GoldNasSearchNetwork(C=8, layers=5, ops=("skip_connect", "conv_9x9"), backend="reference")
    with pytest.raises(ValueError, match="C must be even"):
        GoldNasSearchNetwork(C=7, layers=5, backend="reference")
    with pytest.raises(ValueError, match="layers"):
        GoldNasSearchNetwork(C=8, layers=2, backend="reference")
    with pytest.raises(ValueError, match="input_size"):
        GoldNasSearchNetwork(C=8, layers=5, input_size=30, backend="reference")
    with pytest.raises(ValueError, match="backend"):
        GoldNasSearchNetwork(C=8, layers=5, backend="cuda")
    with pytest.raises(ValueError, match="distinct"):
        GoldNasSearchNetwork(C=8, layers=5, ops=("skip_connect", "skip_connect"), backend="reference")


# ----------------------------------------------------------------------------- backends and lean mode
def _compare(net_a: GoldNasSearchNetwork, net_b: GoldNasSearchNetwork, x: torch.Tensor) -> None:
    out_a, grads_a = train_step(net_a, x)
    out_b, grads_b = train_step(net_b, x)
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        # some true gradients are ~0 (e.g. weights right before an affine-free BN see only rounding noise),
        # so the absolute tolerance follows each tensor's largest gradient
        scale = grads_a[name].abs().max().item()
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-5 * scale + 1e-8, msg=name)


@pytest.mark.parametrize("seed", [None, 7])
def test_lean_equals_non_lean(seed):
    ref = small_net(ops=("skip_connect", "sep_conv_3x3", "avg_pool_3x3"))
    with torch.no_grad():
        ref.alpha.normal_()
    if seed is not None:
        ref.set_alive(random_mask(ref, seed))
    lean = copy.deepcopy(ref)
    lean.lean = True
    assert lean.lean and all(cell.dag.lean for cell in lean.cells)
    _compare(ref, lean, torch.randn(2, 3, 16, 16))


@needs_node_sum
@pytest.mark.parametrize("ops", [DEFAULT_OPS, OPS])
@pytest.mark.parametrize("seed", [None, 11, 12])
@pytest.mark.parametrize("lean", [False, True])
def test_fused_equals_reference(ops, seed, lean):
    ref = small_net(ops=ops, backend="reference", lean=lean)
    with torch.no_grad():
        ref.alpha.normal_()
    if seed is not None:
        ref.set_alive(random_mask(ref, seed))
    fused = copy.deepcopy(ref)
    fused.backend = "fused"
    fused.memory_format = "preserve"  # same layout, same convolution kernels: equal to float32 rounding
    assert fused.backend == "fused" and ref.backend == "reference"
    _compare(ref, fused, torch.randn(2, 3, 16, 16))
    # The default runs CPU cells in channels_last, whose oneDNN kernels round differently (~3x the NCHW
    # error against float64, the same for the reference network in channels_last).
    fused.memory_format = "auto"
    assert fused.memory_format == "auto" and all(c.dag.memory_format == "auto" for c in fused.cells)
    layouts = []
    fused.cells[0].dag.register_forward_hook(
        lambda m, i, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last)))
    assert_as_accurate(train_step, fused, copy.deepcopy(ref).to(memory_format=torch.channels_last), torch.randn(2, 3, 16, 16))
    assert layouts == [True]


# ----------------------------------------------------------------------------- genotypes
def test_genotype_from_the_super_network_and_json_round_trip(tmp_path):
    net = small_net(ops=("none", "skip_connect", "sep_conv_3x3"))
    mask = random_mask(net, 21)
    net.set_alive(mask)
    g = net.genotype()
    want = [set() for _ in range(5)]
    for (c, e, name), a in zip(net.pairs, mask):
        if a and name != "none":
            want[c].add((name, *CELL_EDGES[e]))
    for c in range(5):  # nodes fed only by 'none' are zero: drop what reads them (in node order)
        for t in range(2, 6):
            if not any(tr[2] == t for tr in want[c]):
                want[c] = {tr for tr in want[c] if tr[1] != t}
    assert [set(cell) for cell in g.cells] == want
    assert any(len(w) < sum(a and n != "none" for (c2, _, n), a in zip(net.pairs, mask) if c2 == c)
               for c, w in enumerate(want))  # the mask exercises the zero-node rule
    assert g.layers == 5 and g.reductions == (1, 3)
    data = g.to_json()
    assert json.loads(json.dumps(data)) == data
    assert Genotype.from_json(data) == g
    assert Genotype.from_json(json.dumps(data)) == g
    g.save(tmp_path / "g.json")
    assert Genotype.load(tmp_path / "g.json") == g
    assert build_network(tmp_path / "g.json", C=4).genotype == g
    assert build_network(data, C=4).genotype == g


def _cells(n: int = 3, cell=(("sep_conv_3x3", 0, 2),)) -> list:
    return [list(cell) for _ in range(n)]


@pytest.mark.parametrize("cells, message", [
    ([[("sep_conv_9x9", 0, 2)]] + _cells(2), r"cell 0, triple 0 .*unknown operator 'sep_conv_9x9'"),
    (_cells(1) + [[("none", 0, 2)]] + _cells(1), r"cell 1, triple 0 .*'none'"),
    (_cells(2) + [[("sep_conv_3x3", 0, 2), ("skip_connect", 1, 6)]], r"cell 2, triple 1 .*target node must be in 2..5"),
    (_cells(2) + [[("sep_conv_3x3", 3, 3)]], r"cell 2, triple 0 .*source node must be in 0..2"),
    (_cells(2) + [[("sep_conv_3x3", -1, 2)]], r"cell 2, triple 0 .*source node"),
    (_cells(1) + [[]] + _cells(1), r"cell 1 has no operations"),
    (_cells(1) + [[("skip_connect", 0, 2), ("sep_conv_3x3", 3, 4)]] + _cells(1),
     r"cell 1: node 3 is the source of \('sep_conv_3x3', 3, 4\) but has no inputs"),
    (_cells(2) + [[("skip_connect", 0, 2), ("skip_connect", 0, 2)]], r"cell 2: triple .* more than once"),
    (_cells(2) + [[("skip_connect", "0", 2)]], r"cell 2, triple 0 .*source must be an int"),
    (_cells(2) + [["skip_connect", 0]], r"cell 2, triple 0 .*\(op, source, target\) triple"),
    (_cells(2), r"at least 3 cells"),
])
def test_bad_genotypes_name_what_is_wrong(cells, message):
    with pytest.raises(ValueError, match=message):
        Genotype(cells)


def test_bad_genotype_json():
    good = Genotype(_cells(6)).to_json()
    assert good["reductions"] == [2, 4]
    with pytest.raises(ValueError, match="reductions \\[1, 4\\] do not match .* cells \\[2, 4\\]"):
        Genotype.from_json({**good, "reductions": [1, 4]})
    with pytest.raises(ValueError, match="'layers' is 7 but 'cells' holds 6"):
        Genotype.from_json({**good, "layers": 7})
    with pytest.raises(ValueError, match="format"):
        Genotype.from_json({**good, "format": "other/9"})
    with pytest.raises(ValueError, match="not valid JSON"):
        Genotype.from_json("{cells: ")
    with pytest.raises(ValueError, match="'cells'"):
        Genotype.from_json({"layers": 3})


# ----------------------------------------------------------------------------- re-training network
def _aux_params(C_aux: int, K: int) -> int:
    return C_aux * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * K + K


# L = 3 cells, C = 4: reductions at 1 and 2 (C = 8, 16); widths vary with the concatenated nodes.
SMALL = Genotype([
    [("skip_connect", 0, 2), ("sep_conv_3x3", 1, 3), ("dil_conv_5x5", 2, 3)],  # concat (2, 3): 2 x 4 ch
    [("skip_connect", 0, 2)],  # reduction, FactorizedReduce op; input 1 unused; concat (2,): 8 ch
    [("sep_conv_3x3", 1, 2), ("max_pool_3x3", 0, 3), ("skip_connect", 2, 4)],  # reduction; concat 3 x 16 ch
])


def test_build_network_params_closed_form():
    K = 10
    stem = 27 * 12 + 2 * 12
    cell0 = (12 * 4 + 8) * 2 + 2 * (9 * 4 + 16 + 8) + (25 * 4 + 16 + 8)  # two 1x1 pre-proc, sep3, dil5
    cell1 = (12 * 8 + 16) + (8 * 8 + 16)  # 1x1 pre-proc of input 0, FactorizedReduce(8 -> 8)
    cell2 = (8 * 16 + 32) + (8 * 16 + 32) + 2 * (9 * 16 + 256 + 32)  # FR pre-proc, 1x1 pre-proc, sep3
    head = 48 * K + K
    net = build_network(SMALL, C=4, num_classes=K, auxiliary=False)
    assert [c.multiplier for c in net.cells] == [2, 1, 3]
    assert net.cells[1].preprocess1 is None
    assert sum(p.numel() for p in net.parameters()) == stem + cell0 + cell1 + cell2 + head
    assert network_cost(SMALL, C=4, num_classes=K, input_size=16).params_m * 1e6 == pytest.approx(
        stem + cell0 + cell1 + cell2 + head)
    with_aux = build_network(SMALL, C=4, num_classes=K)
    assert sum(p.numel() for p in with_aux.parameters()) == stem + cell0 + cell1 + cell2 + head + _aux_params(48, K)
    # 'goldnas-code' style: cell BNs without affine parameters, skip followed by BN
    code = build_network(SMALL, C=4, num_classes=K, auxiliary=False, style="goldnas-code")
    no_bn = stem + 12 * 4 * 2 + 2 * (9 * 4 + 16) + 25 * 4 + 16 + 12 * 8 + 8 * 8 + 8 * 16 * 2 + 2 * (9 * 16 + 256) + head
    assert sum(p.numel() for p in code.parameters()) == no_bn


def test_build_network_forward_backward_and_drop_path():
    net = build_network(SMALL, C=4, drop_path_prob=0.2)
    x = torch.randn(4, 3, 16, 16)
    logits, aux = net(x)
    assert logits.shape == aux.shape == (4, 10)
    (logits.sum() + 0.4 * aux.sum()).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    assert net(x)[1] is None
    net.drop_path_prob = 0.3
    assert net.drop_path_prob == 0.3
    for bad in (1.0, -0.1, "0.2"):
        with pytest.raises(ValueError, match="drop_path_prob"):
            net.drop_path_prob = bad
    with pytest.raises(ValueError, match="style"):
        build_network(SMALL, C=4, style="nasnet")


def test_drop_path_never_touches_identity_ops():
    x = torch.randn(8, 6, 8, 8)
    for name, dropped in (("skip_connect", False), ("sep_conv_3x3", True), ("avg_pool_3x3", True)):
        torch.manual_seed(0)
        cell = RetrainCell(((name, 1, 2),), 6, 6, 4, reduction=False, reduction_prev=False, style="darts").train()
        plain = cell(x, x, 0.0)
        torch.manual_seed(1)
        with_drop = cell(x, x, 0.7)
        assert torch.equal(plain, with_drop) != dropped, name
        if dropped:
            zeroed = with_drop.flatten(1).abs().sum(1) == 0
            assert zeroed.any() and not zeroed.all()
            torch.testing.assert_close(with_drop[~zeroed], plain[~zeroed] / 0.3)


def test_full_genotype_costs_what_the_super_network_costs():
    """A genotype keeping every pair rebuilds the super-network: same FLOPs (hooks vs closed form) and,
    in the 'goldnas-code' style, the same weights."""
    net = small_net(ops=("skip_connect", "sep_conv_3x3", "dil_conv_3x3"), auxiliary=False)
    g = net.genotype()
    assert g.num_ops() == net.num_pairs
    cost = network_cost(g, C=8, input_size=16, style="goldnas-code")
    assert cost.flops_m == pytest.approx(net.discrete_flops_m(), rel=1e-12)
    assert cost.params_m * 1e6 == pytest.approx(sum(p.numel() for p in net.weight_parameters()))
    # pruning a whole node's fan-out narrows the next cells' pre-processing: the exact count is lower
    mask = random_mask(net, 4, keep=0.2)
    net.set_alive(mask)
    assert network_cost(net.genotype(), C=8, input_size=16, style="goldnas-code").flops_m <= net.discrete_flops_m()
