"""The generic building blocks with a user-defined operator set: DAGCell (backends, lean mode, pruning,
'last'/'concat' outputs, two input nodes, argument checks) and MixedOp."""
from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import goldnas_fast.ops
from goldnas_fast.nn import AvgPool3x3, DAGCell, Edge, Identity, MaxPool3x3, MixedOp

HAS_NODE_SUM = callable(getattr(goldnas_fast.ops, "node_sum", None))
needs_node_sum = pytest.mark.skipif(not HAS_NODE_SUM, reason="goldnas_fast.ops.node_sum not available yet")
C, H = 3, 5


pytestmark = pytest.mark.usefixtures("single_thread")


class Wiggle(nn.Module):
    """A custom parametric op the cell knows nothing about: ``a * tanh(x) + b``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(1, C, 1, 1))
        self.b = nn.Parameter(torch.randn(1, C, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.tanh(x) + self.b


def conv(k: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, k, padding=k // 2), nn.BatchNorm2d(C, affine=False))


def make_ops() -> tuple[tuple[str, nn.Module], ...]:
    return (("conv3", conv(3)), ("skip", Identity()), ("max", MaxPool3x3()), ("avg", AvgPool3x3()),
            ("wiggle", Wiggle()), ("plain_id", nn.Identity()))


def make_cell(output: str = "last", backend: str = "reference", lean: bool = False, num_inputs: int = 2,
              nodes: int = 3) -> DAGCell:
    """``num_inputs`` inputs, ``nodes`` intermediate nodes, every earlier node feeds every intermediate one."""
    torch.manual_seed(0)
    edges = [Edge(s, t, make_ops()) for t in range(num_inputs, num_inputs + nodes) for s in range(t)]
    return DAGCell(num_inputs, edges, output=output, backend=backend, lean=lean)


def pair_target(cell: DAGCell, p: int) -> int:
    """Target node of pair ``p`` of a :func:`make_cell` cell (edges ordered by target, then source)."""
    edges = [t for t in range(cell.num_inputs, cell.num_nodes) for _ in range(t)]
    return edges[cell.pairs[p][0]]


def pair_key(cell: DAGCell, p: int) -> str:
    _, s, name = cell.pairs[p]
    return f"{pair_target(cell, p)}<-{s}:{name}"


def random_mask(cell: DAGCell, seed: int, keep: float = 0.4) -> list[bool]:
    rng = random.Random(seed)
    alive = [rng.random() < keep for _ in range(cell.num_pairs)]
    targets = [pair_target(cell, p) for p in range(cell.num_pairs)]
    for node in set(targets):
        members = [p for p, t in enumerate(targets) if t == node]
        if not any(alive[p] for p in members):
            alive[rng.choice(members)] = True
    return alive


def inputs(num_inputs: int = 2, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, C, H, H, generator=g).requires_grad_() for _ in range(num_inputs)]


def run(cell: DAGCell, xs: list[torch.Tensor], w: torch.Tensor):
    """Output and the gradients of inputs, gates and every parameter for a fixed non-trivial loss."""
    xs = [x.detach().clone().requires_grad_() for x in xs]
    w = w.detach().clone().requires_grad_()
    cell.zero_grad(set_to_none=True)
    out = cell(xs, w)
    (out.square().sum() + out.sin().sum()).backward()
    grads = {n: p.grad.clone() for n, p in cell.named_parameters() if p.grad is not None}
    return out.detach(), [x.grad for x in xs], w.grad, grads


def assert_same(a, b) -> None:
    out_a, gx_a, gw_a, gp_a = a
    out_b, gx_b, gw_b, gp_b = b
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-5)
    for x1, x2 in zip(gx_a, gx_b):
        torch.testing.assert_close(x1, x2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gw_a, gw_b, rtol=1e-4, atol=1e-4)
    assert gp_a.keys() == gp_b.keys()
    # conv biases before an affine-free BN have zero true gradient: what remains is rounding noise of the
    # size of the other gradients times eps, so the absolute tolerance follows the largest gradient
    atol = 5e-5 * max(float(g.abs().max()) for g in gp_a.values()) + 1e-6
    for name in gp_a:
        torch.testing.assert_close(gp_a[name], gp_b[name], rtol=1e-4, atol=atol, msg=name)


def by_hand(cell: DAGCell, xs: list[torch.Tensor], w: torch.Tensor, output: str) -> torch.Tensor:
    """DARTS written out: node t = sum over live (edge into t, op) of w[pair] * op(node[source])."""
    nodes = list(xs)
    p = 0
    per_node: dict[int, list[torch.Tensor]] = {}
    alive = cell.alive
    for t in range(cell.num_inputs, cell.num_nodes):
        for s in range(t):
            for name, _ in make_ops():
                if alive[p]:
                    per_node.setdefault(t, []).append((p, s, name))
                p += 1
    for t in range(cell.num_inputs, cell.num_nodes):
        nodes.append(sum(w[p] * cell.candidates[f"{t}<-{s}:{name}"](nodes[s]) for p, s, name in per_node[t]))
    return nodes[-1] if output == "last" else torch.cat(nodes[cell.num_inputs:], 1)


# ----------------------------------------------------------------------------- semantics
@pytest.mark.parametrize("output", ["last", "concat"])
@pytest.mark.parametrize("seed", [None, 4])
def test_reference_is_the_darts_sum(output, seed):
    cell = make_cell(output)
    if seed is not None:
        cell.set_alive(random_mask(cell, seed))
    xs, w = inputs(), torch.rand(cell.num_pairs) + 0.1
    assert cell.num_pairs == (2 + 3 + 4) * 6
    assert cell.pairs[:7] == [(0, 0, n) for n, _ in make_ops()] + [(1, 1, "conv3")]
    torch.testing.assert_close(cell(xs, w), by_hand(cell, xs, w, output))
    out = cell(xs, w)
    assert out.shape == ((2, C, H, H) if output == "last" else (2, 3 * C, H, H))


def test_single_input_cell_and_isolated_sources():
    """One input node; a node nobody reads (node 1 in 'last' mode) is still computed in 'concat' mode."""
    edges = [Edge(0, 1, make_ops()[:2]), Edge(0, 2, make_ops()[2:4])]
    for output, channels in (("last", C), ("concat", 2 * C)):
        cell = DAGCell(1, edges, output=output, backend="reference")
        x = torch.randn(2, C, H, H)
        w = torch.tensor([0.5, 2.0, 1.0, -1.0])
        n1 = 0.5 * edges[0].ops[0][1](x) + 2.0 * x
        n2 = F.max_pool2d(x, 3, 1, 1) - F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        want = n2 if output == "last" else torch.cat([n1, n2], 1)
        out = cell([x], w)
        assert out.shape[1] == channels
        torch.testing.assert_close(out, want)


@pytest.mark.parametrize("output", ["last", "concat"])
@pytest.mark.parametrize("seed", [None, 6])
def test_lean_equals_non_lean(output, seed):
    cell = make_cell(output)
    if seed is not None:
        cell.set_alive(random_mask(cell, seed))
    lean = copy.deepcopy(cell)
    lean.lean = True
    xs, w = inputs(), torch.randn(cell.num_pairs)
    assert_same(run(cell, xs, w), run(lean, xs, w))



@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=needs_node_sum)])
def test_lean_recompute_moves_batch_norm_statistics_once(backend):
    cell = make_cell("concat", backend=backend)
    lean = copy.deepcopy(cell)
    lean.lean = True
    xs, w = inputs(), torch.randn(cell.num_pairs)
    for _ in range(2):
        run(cell, xs, w)
        run(lean, xs, w)
    buffers = dict(cell.named_buffers())
    assert any(name.endswith("num_batches_tracked") for name in buffers)
    for name, value in lean.named_buffers():
        torch.testing.assert_close(value, buffers[name], rtol=0, atol=0, msg=name)
    assert all(m.momentum == 0.1 for m in lean.modules() if isinstance(m, nn.BatchNorm2d))


def test_lean_cell_compiles_and_matches_eager():
    cell = make_cell("concat")
    lean = copy.deepcopy(cell)
    lean.lean = True
    lean.compile(backend="aot_eager")  # in place: parameter names stay those of the eager cell
    xs, w = inputs(), torch.randn(cell.num_pairs)
    assert_same(run(cell, xs, w), run(lean, xs, w))
    for name, value in lean.named_buffers():
        torch.testing.assert_close(value, dict(cell.named_buffers())[name], rtol=0, atol=0, msg=name)

@needs_node_sum
@pytest.mark.parametrize("output", ["last", "concat"])
@pytest.mark.parametrize("seed", [None, 7, 8])
@pytest.mark.parametrize("lean", [False, True])
def test_fused_equals_reference(output, seed, lean):
    ref = make_cell(output, lean=lean)
    if seed is not None:
        ref.set_alive(random_mask(ref, seed))
    fused = copy.deepcopy(ref)
    fused.backend = "fused"
    xs, w = inputs(), torch.randn(ref.num_pairs)
    assert_same(run(ref, xs, w), run(fused, xs, w))


@needs_node_sum
@pytest.mark.parametrize("output", ["last", "concat"])
def test_memory_format_auto_runs_cpu_float_cells_channels_last(output):
    ref = make_cell(output)
    fused = copy.deepcopy(ref)
    fused.backend = "fused"
    assert fused.memory_format == "auto"
    xs, w = inputs(), torch.randn(ref.num_pairs)
    out = fused(xs, w)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert_same(run(ref, xs, w), run(fused, xs, w))
    fused.memory_format = "preserve"
    assert fused(xs, w).is_contiguous()
    fused.memory_format = "auto"
    # float64 has no oneDNN kernels (no gain from NHWC) and the reference backend is the plain baseline
    assert copy.deepcopy(fused).double()([x.double() for x in xs], w.double()).is_contiguous()
    bf16 = copy.deepcopy(fused).bfloat16()([x.bfloat16() for x in xs], w.bfloat16())
    assert bf16.is_contiguous(memory_format=torch.channels_last) and not bf16.is_contiguous()
    assert ref(xs, w).is_contiguous()
    with pytest.raises(ValueError, match="memory_format"):
        fused.memory_format = "channels_last"


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=needs_node_sum)])
def test_pruned_pairs_are_frozen_and_get_no_gradient(backend):
    cell = make_cell("concat", backend=backend)  # every node is an output, so every live op gets a gradient
    mask = random_mask(cell, 3)
    cell.set_alive(mask)
    assert cell.alive == mask
    _, _, gw, grads = run(cell, inputs(), torch.randn(cell.num_pairs))
    assert torch.all(gw[torch.tensor([not a for a in mask])] == 0)
    for p in range(cell.num_pairs):
        key = pair_key(cell, p)
        for pname, param in cell.candidates[key].named_parameters():
            assert param.requires_grad == mask[p]
            assert (f"candidates.{key}.{pname}" in grads) == mask[p]
    cell.set_alive([True] * cell.num_pairs)
    assert all(q.requires_grad for q in cell.parameters())


def test_eval_mode_and_no_grad_run_the_same_cell():
    cell = make_cell("concat", lean=True)
    xs, w = inputs(), torch.randn(cell.num_pairs)
    want = cell(xs, w).detach()
    with torch.no_grad():
        torch.testing.assert_close(cell(xs, w), want)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    ({"num_inputs": 0}, "num_inputs"),
    ({"output": "sum"}, "output"),
    ({"edges": []}, "edges"),
    ({"edges": [Edge(0, 1, (("skip", Identity()),))]}, "intermediate"),  # target 1 is an input node
    ({"edges": [Edge(2, 2, (("skip", Identity()),))]}, "earlier"),
    ({"edges": [Edge(0, 2, ())]}, "no candidate"),
    ({"edges": [Edge(0, 2, (("skip", Identity()), ("skip", Identity())))]}, "twice"),
    ({"backend": "cuda"}, "backend"),
    ({"memory_format": "nhwc"}, "memory_format"),
])
def test_bad_constructor_arguments(kwargs, match):
    args = {"num_inputs": 2, "edges": [Edge(0, 2, (("skip", Identity()),))], **kwargs}
    with pytest.raises(ValueError, match=match):
        DAGCell(**args)


def test_bad_call_arguments():
    cell = make_cell()
    xs, w = inputs(), torch.randn(cell.num_pairs)
    with pytest.raises(ValueError, match="input tensors"):
        cell(xs[:1], w)
    with pytest.raises(ValueError, match="weights"):
        cell(xs, w[:-1])
    with pytest.raises(ValueError, match="weights"):
        cell(xs, w.view(1, -1))
    with pytest.raises(ValueError, match="alive"):
        cell.set_alive([True] * (cell.num_pairs + 1))
    with pytest.raises(ValueError, match="backend"):
        cell.backend = "gpu"


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=needs_node_sum)])
def test_node_without_inputs_raises(backend):
    cell = make_cell(backend=backend)
    alive = [True] * cell.num_pairs
    for p in range(cell.num_pairs):
        if pair_target(cell, p) == 3:
            alive[p] = False
    cell.set_alive(alive)  # the mask is accepted; running the cell is not
    with pytest.raises(RuntimeError, match="node 3"):
        cell(inputs(), torch.randn(cell.num_pairs))
    gap = DAGCell(1, [Edge(0, 2, (("skip", Identity()),))], backend=backend)  # node 1 has no edge at all
    with pytest.raises(RuntimeError, match="node 1"):
        gap([torch.randn(1, C, H, H)], torch.ones(1))


# ----------------------------------------------------------------------------- MixedOp
def test_mixed_op_equals_darts_sum():
    torch.manual_seed(0)
    ops = [op for _, op in make_ops()]
    mixed = MixedOp(ops)
    x = torch.randn(2, C, H, H, requires_grad=True)
    w = torch.softmax(torch.randn(len(ops)), 0).requires_grad_()
    out = mixed(x, w)
    want = sum(wk * op(x) for wk, op in zip(w, ops))
    torch.testing.assert_close(out, want)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, w, *mixed.parameters()], g)
    exp = torch.autograd.grad(want, [x, w, *mixed.parameters()], g)
    for a, b in zip(got, exp):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="candidates"):
        MixedOp([])
    with pytest.raises(ValueError, match="weights"):
        mixed(x, w[:-1])
