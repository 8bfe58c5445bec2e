"""The fused cell's ReLU sharing and output-saving BatchNorm: same numbers as nn modules, fewer saved tensors."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import goldnas_fast.ops
from goldnas_fast.nb201.blocks import ReLUConvBN
from goldnas_fast.nn import (AvgPool3x3, DAGCell, Edge, Identity, output_saving_batch_norm, relu_body, run_body,
                             saves_output)
from goldnas_fast.spaces.goldnas.ops import DilConv, SepConv

needs_node_sum = pytest.mark.skipif(not callable(getattr(goldnas_fast.ops, "node_sum", None)),
                                    reason="goldnas_fast.ops.node_sum not available")
pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- output-saving BatchNorm
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("track, momentum", [(False, 0.1), (True, 0.1), (True, None)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_output_saving_batch_norm_equals_module(dtype, tol, track, momentum, channels_last):
    torch.manual_seed(3)
    bn = nn.BatchNorm2d(6, affine=False, track_running_stats=track, momentum=momentum).to(dtype)
    plain = copy.deepcopy(bn)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for step in range(3):  # several steps: running statistics and the batch counter must move alike
        x = (3 * torch.randn(4, 6, 5, 7) + 2).to(dtype).to(memory_format=fmt).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        g = torch.randn(4, 6, 5, 7).to(dtype)
        assert saves_output(bn)
        y, y2 = output_saving_batch_norm(bn, x), plain(x2)
        y.backward(g)
        y2.backward(g)
        torch.testing.assert_close(y, y2, rtol=tol, atol=tol)
        torch.testing.assert_close(x.grad, x2.grad, rtol=tol, atol=tol * float(x2.grad.abs().max()))
    for name, value in plain.named_buffers():
        torch.testing.assert_close(dict(bn.named_buffers())[name], value, rtol=tol, atol=tol, msg=name)


def test_output_saving_batch_norm_gradcheck_and_saves_only_its_output():
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False).double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: output_saving_batch_norm(bn, t), (x,))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = output_saving_batch_norm(bn, x * 2)
    assert [t.shape for t in saved if t.dim() == 4] == [y.shape]
    assert any(t.data_ptr() == y.data_ptr() for t in saved)


def test_saves_output_only_where_it_is_exact():
    assert saves_output(nn.BatchNorm2d(4, affine=False))
    assert saves_output(nn.BatchNorm2d(4, affine=False, track_running_stats=False).eval())  # batch statistics
    assert not saves_output(nn.BatchNorm2d(4, affine=False).eval())  # running statistics
    assert not saves_output(nn.BatchNorm2d(4))  # affine: the output is not the normalized input
    assert not saves_output(nn.SyncBatchNorm(4, affine=False))
    hooked = nn.BatchNorm2d(4, affine=False)
    hooked.register_forward_hook(lambda *a: None)
    assert not saves_output(hooked)
    with pytest.raises(ValueError, match="4D"):
        output_saving_batch_norm(nn.BatchNorm2d(4, affine=False), torch.randn(2, 4))


def test_output_saving_batch_norm_refuses_what_it_cannot_do():
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(output_saving_batch_norm(bn, x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|double backward|twice"):
        gx.sum().backward()  # would be silently wrong (invstd saved as a constant), so it must raise
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        output_saving_batch_norm(nn.BatchNorm2d(3, affine=False), torch.randn(1, 3, 1, 1))
    backward_hooked = nn.BatchNorm2d(3, affine=False)
    backward_hooked.register_full_backward_hook(lambda *a: None)
    assert not saves_output(backward_hooked)
    seen = []

    def f(t):
        seen.append(saves_output(bn))
        return t.sum()

    torch.func.grad(f)(torch.randn(3))
    assert seen == [False] and saves_output(bn)


# ----------------------------------------------------------------------------- relu_body
def test_relu_body_finds_the_layers_after_a_leading_relu():
    nb201 = ReLUConvBN(4, 4, 3, 1, 1, affine=False)
    assert relu_body(nb201) == list(nb201.op)[1:]
    dil = DilConv(4, 4, 3, 1, 2, 2, affine=False)
    assert relu_body(dil) == list(dil)[1:]
    sep = SepConv(4, 4, 3, 1, 1, affine=False)
    assert relu_body(sep) == list(sep[0])[1:] + [sep[1]]
    assert relu_body(nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())) is None
    assert relu_body(nn.Sequential(nn.ReLU6(), nn.Conv2d(4, 4, 1))) is None
    assert relu_body(Identity()) is None and relu_body(nn.Sequential()) is None

    class Custom(nn.Sequential):
        def forward(self, x):
            return super().forward(x) * 2

    assert relu_body(Custom(nn.ReLU(), nn.Conv2d(4, 4, 1))) is None
    hooked = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 1))
    hooked[0].register_forward_pre_hook(lambda *a: None)
    assert relu_body(hooked) is None
    backward_hooked = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 1))
    backward_hooked.register_full_backward_hook(lambda *a: None)
    assert relu_body(backward_hooked) is None
    assert relu_body(nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(4, 4, 1))) is None
    assert relu_body(nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU(inplace=True))) is None


def test_run_body_equals_the_module():
    torch.manual_seed(0)
    sep = SepConv(4, 4, 3, 1, 1, affine=False)
    plain = copy.deepcopy(sep)
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(run_body(relu_body(sep), torch.relu(x)), plain(x))
    for name, value in plain.named_buffers():
        torch.testing.assert_close(dict(sep.named_buffers())[name], value, msg=name)


# ----------------------------------------------------------------------------- in a fused cell
def nb201_cell(backend: str, lean: bool = False) -> DAGCell:
    torch.manual_seed(0)

    def ops():
        return (("skip", Identity()), ("conv1", ReLUConvBN(C, C, 1, 1, 0, affine=False, track_running_stats=False)),
                ("conv3", ReLUConvBN(C, C, 3, 1, 1, affine=False, track_running_stats=False)),
                ("avg", AvgPool3x3()))

    return DAGCell(1, [Edge(s, t, ops()) for t in (1, 2, 3) for s in range(t)], backend=backend, lean=lean)


C, B, H = 4, 3, 8


def saved_storages(cell: DAGCell, x: torch.Tensor, w: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter activations the cell saves for backward."""
    params = {p.untyped_storage().data_ptr() for p in cell.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params and t.dim() == 4:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cell([x], w)
    return sum(saved.values())


@needs_node_sum
def test_fused_nb201_cell_saves_nodes_one_relu_per_source_and_conv_outputs():
    x = torch.randn(B, C, H, H, requires_grad=True)
    w = torch.rand(24, requires_grad=True)
    one = B * C * H * H * 4
    # reference: per conv op its ReLU, conv output and BN output (12 ops), per pool its output (6), and the
    # nodes 0, 1, 2 (the output node 3 feeds nothing inside the cell)
    assert saved_storages(nb201_cell("reference"), x, w) == one * (12 * 3 + 6 + 3)
    # fused: nodes 0, 1, 2, one ReLU per source node (3), one BN output per conv op (12)
    assert saved_storages(nb201_cell("fused"), x, w) == one * (3 + 3 + 12)


@needs_node_sum
@pytest.mark.parametrize("lean", [False, True])
def test_fused_nb201_cell_equals_reference_with_running_statistics(lean):
    ref = nb201_cell("reference", lean)
    for m in ref.modules():  # running statistics too, so that the buffers are compared
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = True
            m.register_buffer("running_mean", torch.zeros(C))
            m.register_buffer("running_var", torch.ones(C))
            m.register_buffer("num_batches_tracked", torch.tensor(0))
    fused = copy.deepcopy(ref)
    fused.backend = "fused"
    torch.manual_seed(1)
    w = torch.rand(24)
    for _ in range(2):
        x = torch.randn(B, C, H, H)
        outs, grads = [], []
        for cell in (ref, fused):
            xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
            cell.zero_grad(set_to_none=True)
            out = cell([xi], wi)
            (out.square().sum() + out.sin().sum()).backward()
            outs.append(out)
            grads.append([xi.grad, wi.grad] + [p.grad for p in cell.parameters() if p.grad is not None])
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
        scale = max(float(g.abs().max()) for g in grads[0])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)
    fused_buffers = dict(fused.named_buffers())
    for name, value in ref.named_buffers():
        torch.testing.assert_close(fused_buffers[name], value, rtol=1e-5, atol=1e-6, msg=name)


@needs_node_sum
def test_fused_cell_with_shared_relu_compiles():
    eager = nb201_cell("fused")
    compiled = copy.deepcopy(eager)
    compiled.compile(backend="aot_eager", fullgraph=True)
    x, w = torch.randn(B, C, H, H), torch.rand(24)
    torch.testing.assert_close(compiled([x], w), eager([x], w), rtol=1e-5, atol=1e-5)


@needs_node_sum
def test_fused_cell_keeps_in_place_and_inner_batch_norm_operators_exact():
    # an in-place ReLU after an inner BN must not hit a saved output; such operators run as modules
    def ops():
        return (("inplace", nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, 3, padding=1), nn.BatchNorm2d(C, affine=False),
                                          nn.ReLU(inplace=True), nn.Conv2d(C, C, 1))),
                ("sep", SepConv(C, C, 3, 1, 1, affine=False)), ("skip", Identity()))

    torch.manual_seed(0)
    ref = DAGCell(1, [Edge(s, t, ops()) for t in (1, 2) for s in range(t)], backend="reference")
    fused = copy.deepcopy(ref)
    fused.backend = "fused"
    x, w = torch.randn(B, C, H, H), torch.rand(ref.num_pairs)
    results = []
    for cell in (ref, fused):
        xi = x.clone().requires_grad_()
        out = cell([xi], w)
        out.square().sum().backward()
        results.append((out, xi.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-4)
    for name, value in ref.named_buffers():
        torch.testing.assert_close(dict(fused.named_buffers())[name], value, msg=name)
