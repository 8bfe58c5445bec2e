"""avg_pool_3x3: the one 3x3 average pooling of the reference operators, safe from torch's channels_last
CUDA backward bug (pytorch/pytorch#188344); the route around the bug is tested on the CPU by forcing it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from goldnas_fast.ops import pooling
from goldnas_fast.ops.pooling import PaddedAvgPool3x3, avg_pool_3x3, nhwc_avg_pool_backward_is_wrong
from tests.conftest import DEVICES


def _pool_and_grad(fn, x, g):
    x = x.detach().requires_grad_()
    out = fn(x)
    return out, torch.autograd.grad(out, x, g)[0]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (1, 3, 1, 4), (2, 8, 1, 1)])
def test_nchw_route_gives_pytorchs_values_and_keeps_the_layout(monkeypatch, stride, shape):
    # Forced as if torch's NHWC backward were broken here: the pool runs on an NCHW copy.
    monkeypatch.setattr(pooling, "nhwc_avg_pool_backward_is_wrong", lambda device: True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    want = F.avg_pool2d(x.contiguous(), 3, stride=stride, padding=1, count_include_pad=False)
    g = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    calls = []
    real_pool = F.avg_pool2d

    def spy(t, *args, **kwargs):
        calls.append(t.is_contiguous())
        return real_pool(t, *args, **kwargs)

    monkeypatch.setattr(F, "avg_pool2d", spy)
    out, grad = _pool_and_grad(lambda t: avg_pool_3x3(t, stride), x, g)
    assert calls == [True]  # pooled an NCHW copy
    monkeypatch.setattr(F, "avg_pool2d", real_pool)
    ref_out, ref_grad = _pool_and_grad(lambda t: F.avg_pool2d(t, 3, stride, 1, count_include_pad=False),
                                       x.contiguous(), g)
    torch.testing.assert_close(out, ref_out, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-14, atol=1e-14)
    assert out.is_contiguous(memory_format=torch.channels_last)
    plain = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    assert out.stride() == plain.stride()  # the layout F.avg_pool2d itself gives


@pytest.mark.parametrize("shape", [(2, 1, 5, 4), (3, 4, 1, 1)])
def test_nchw_route_for_ambiguous_channels_last_strides(monkeypatch, shape):
    # With one channel (or a 1x1 plane) a channels_last tensor, e.g. a conv output of a channels_last model,
    # is also NCHW-contiguous, yet torch's strides rule sends it to the NHWC kernel: it must take the NCHW
    # route too, and pool a copy with NCHW strides (x.contiguous() would return x itself).
    from torch._prims_common import suggest_memory_format

    monkeypatch.setattr(pooling, "nhwc_avg_pool_backward_is_wrong", lambda device: True)
    x = torch.empty(shape, dtype=torch.float64, memory_format=torch.channels_last).copy_(torch.randn(shape))
    assert x.is_contiguous() and suggest_memory_format(x) == torch.channels_last
    formats = []
    real_pool = F.avg_pool2d
    monkeypatch.setattr(F, "avg_pool2d", lambda t, *a, **k: formats.append(suggest_memory_format(t)) or
                        real_pool(t, *a, **k))
    g = torch.randn(shape, dtype=torch.float64)
    out, grad = _pool_and_grad(avg_pool_3x3, x, g)
    assert formats == [torch.contiguous_format]
    monkeypatch.setattr(F, "avg_pool2d", real_pool)
    ref_out, ref_grad = _pool_and_grad(avg_pool_3x3, x.clone(memory_format=torch.contiguous_format), g)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=0)
    assert out.stride() == real_pool(x, 3, 1, 1, count_include_pad=False).stride()


def test_direct_call_where_torch_is_right(monkeypatch):
    calls = []
    real_pool = F.avg_pool2d
    monkeypatch.setattr(F, "avg_pool2d", lambda t, *a, **k: calls.append(t.is_contiguous()) or real_pool(t, *a, **k))
    x = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    avg_pool_3x3(x)  # CPU: torch's kernels are right, no copy
    monkeypatch.setattr(pooling, "nhwc_avg_pool_backward_is_wrong", lambda device: True)
    avg_pool_3x3(x.detach())  # no gradient wanted: the forward is right everywhere
    avg_pool_3x3(x.detach().contiguous().requires_grad_())  # NCHW is right everywhere
    assert calls == [False, False, True]


def test_probe_finds_the_cpu_kernels_right():
    assert pooling._probe(torch.device("cpu")) is False
    assert nhwc_avg_pool_backward_is_wrong(torch.device("cpu")) is False


def test_probe_detects_a_wrong_nhwc_backward(monkeypatch):
    # A stand-in for the bug: channels_last gradients shifted by one pixel.
    real_pool = F.avg_pool2d

    class Shifted(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return real_pool(t, 3, stride=1, padding=1, count_include_pad=False)

        @staticmethod
        def backward(ctx, g):
            grad = torch.ops.aten.avg_pool2d_backward(g.contiguous(), g.contiguous(), [3, 3], [1, 1], [1, 1], False,
                                                      False, None)
            return grad.roll(1, dims=3).contiguous(memory_format=torch.channels_last)

    def buggy(t, *args, **kwargs):
        if t.is_contiguous():
            return real_pool(t, *args, **kwargs)
        return Shifted.apply(t)

    monkeypatch.setattr(F, "avg_pool2d", buggy)
    assert pooling._probe(torch.device("cpu")) is True


@pytest.mark.parametrize("channels", [6, 1])
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_match_nchw_on_every_device(device, channels):
    # On CUDA this holds whether or not the installed torch has the bug: avg_pool_3x3 routes around it. One
    # channel: channels_last strides that are also NCHW-contiguous (torch still picks its NHWC kernel).
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, channels, 7, 5, generator=gen, dtype=torch.float64).to(device)
    g = torch.randn(2, channels, 7, 5, generator=gen, dtype=torch.float64).to(device)
    _, want = _pool_and_grad(avg_pool_3x3, x, g)
    nhwc = torch.empty(x.shape, dtype=x.dtype, device=device, memory_format=torch.channels_last).copy_(x)
    out, got = _pool_and_grad(avg_pool_3x3, nhwc, g)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert nhwc_avg_pool_backward_is_wrong(x.device) in (True, False)


@pytest.mark.parametrize("stride", [1, 2])
def test_module_is_the_torch_module_with_the_safe_function(monkeypatch, stride):
    module = PaddedAvgPool3x3(stride)
    assert isinstance(module, torch.nn.AvgPool2d) and module.count_include_pad is False
    used = []
    monkeypatch.setattr(pooling, "avg_pool_3x3", lambda x, s: used.append(s) or avg_pool_3x3(x, s))
    x = torch.randn(2, 3, 6, 5)
    torch.testing.assert_close(module(x), F.avg_pool2d(x, 3, stride, 1, count_include_pad=False), rtol=0, atol=0)
    assert used == [stride]
