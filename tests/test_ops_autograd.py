"""Autograd of the fused ops (csrc/autograd.cpp), on the CPU: what is saved, in-place changes after the forward,
partial requires_grad, activation checkpointing, mixed dtypes, and double backward (not supported: it must
raise, never return zeros)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from goldnas_fast.ops import Kind, mixed_sum, mixed_sum_ref, node_sum, node_sum_ref

pytestmark = pytest.mark.usefixtures("single_thread")


def _inputs(dtype=torch.float64, requires_grad=(True, True)):
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 3, 5, 4, generator=gen, dtype=dtype).requires_grad_(r) for r in requires_grad]
    w = torch.rand(4, generator=gen, dtype=torch.float64).requires_grad_()
    return xs, w


# (fused, reference) pairs over the same (xs, w): node_sum with every kind and a tensor in two entries.
OPS = {
    "mixed_sum": (lambda xs, w: mixed_sum(xs, w[:2]), lambda xs, w: mixed_sum_ref(xs, w[:2])),
    "node_sum": (
        lambda xs, w: node_sum([xs[0], xs[1], xs[0]], [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3],
                               [0, 1, 3], w),
        lambda xs, w: node_sum_ref([xs[0], xs[1], xs[0]], [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3],
                                   [0, 1, 3], w),
    ),
}


@pytest.mark.parametrize("name", OPS)
def test_double_backward_raises(name):
    fused, _ = OPS[name]
    xs, w = _inputs()
    (gw,) = torch.autograd.grad((fused(xs, w) ** 2).sum(), [w], create_graph=True)
    assert gw.requires_grad  # the graph reaches the gate gradient...
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(gw.sum(), xs)  # ...but differentiating it again is not supported


@pytest.mark.parametrize("name", OPS)
def test_create_graph_first_order_values(name):
    # create_graph=True for the sake of other parts of a graph still gives the right first-order gradients.
    fused, ref = OPS[name]
    xs, w = _inputs()
    got = torch.autograd.grad(fused(xs, w).sum(), [*xs, w], create_graph=True)
    want = torch.autograd.grad(ref(xs, w).sum(), [*xs, w])
    for a, b in zip(got, want):
        torch.testing.assert_close(a.detach(), b)


@pytest.mark.parametrize("name", OPS)
def test_backward_ops_called_directly_are_not_differentiable(name):
    xs, w = _inputs()
    g = torch.randn_like(xs[0])
    if name == "mixed_sum":
        grads, gw = torch.ops.goldnas.mixed_sum_backward(g, xs, w[:2], True)
    else:
        grads, gw = torch.ops.goldnas.node_sum_backward(g, xs, [0, 1, 0], [0, 1, 2], [0, 1, 3], w, True)
    with pytest.raises(RuntimeError, match="not implemented"):
        torch.autograd.grad(gw.sum() + sum(t.sum() for t in grads), xs)


@pytest.mark.parametrize("name", OPS)
def test_inplace_change_of_a_saved_input_is_detected(name):
    fused, _ = OPS[name]
    xs, w = _inputs()
    leaves = [x.clone() for x in xs]  # non-leaf tensors may be changed in place
    out = fused(leaves, w)
    with torch.no_grad():
        leaves[1].mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("requires_grad", [(True, False), (False, True), (False, False)])
@pytest.mark.parametrize("weights_grad", [True, False])
def test_partial_requires_grad(name, requires_grad, weights_grad):
    fused, ref = OPS[name]
    xs, w = _inputs(requires_grad=requires_grad)
    w.requires_grad_(weights_grad)
    wanted = [t for t in (*xs, w) if t.requires_grad]
    out = fused(xs, w)
    assert out.requires_grad == bool(wanted)
    if not wanted:
        return
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, wanted, g)
    want = torch.autograd.grad(ref(xs, w), wanted, g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", OPS)
def test_gradient_of_the_gates_only(name):
    # torch.autograd.grad(loss, [w]) (the architecture step of DARTS) gets the same gate gradient.
    fused, ref = OPS[name]
    xs, w = _inputs()
    torch.testing.assert_close(torch.autograd.grad(fused(xs, w).sum(), [w])[0],
                               torch.autograd.grad(ref(xs, w).sum(), [w])[0])


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("use_reentrant", [False, True])
def test_activation_checkpointing(name, use_reentrant):
    # DAGCell's lean mode recomputes each node in the backward (torch.utils.checkpoint).
    fused, ref = OPS[name]
    xs, w = _inputs()
    out = checkpoint(lambda a, b, c: fused([a, b], c), *xs, w, use_reentrant=use_reentrant)
    out.sum().backward()  # reentrant checkpointing supports .backward() only
    want = torch.autograd.grad(ref(xs, w).sum(), [*xs, w])
    for t, b in zip((*xs, w), want):
        torch.testing.assert_close(t.grad, b)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_low_precision_inputs_with_float64_gates(name, dtype):
    # As under autocast: reduced-precision activations, higher-precision gates; each gradient has the dtype
    # of its tensor.
    fused, ref = OPS[name]
    xs, w = _inputs(dtype=dtype)
    out = fused(xs, w)
    assert out.dtype == dtype
    grads = torch.autograd.grad(out.float().sum(), [*xs, w])
    assert [t.dtype for t in grads] == [dtype, dtype, torch.float64]
    exact = torch.autograd.grad(ref([x.double() for x in xs], w).sum(), w)[0]
    torch.testing.assert_close(grads[-1], exact, rtol=2e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-2)
