"""node_sum against node_sum_ref: values, gradients, pooling ties, half precision, registration, bad input."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from goldnas_fast.ops import Kind, node_sum, node_sum_ref
from tests.conftest import DEVICES, cuda_ready

KINDS = [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3]
SPATIAL = [(1, 1), (3, 5), (7, 7), (32, 32)]


def _tensor(shape, dtype, device, layout, gen):
    if layout == "strided":
        x = torch.randn(*shape[:-1], shape[-1] * 2, generator=gen, dtype=torch.float64)[..., ::2]
        return x.to(device=device, dtype=dtype)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _random_node(seed, shape, dtype, device, layout="contiguous", kinds=KINDS, num_entries=None):
    """E entries over U distinct tensors (repeats), G gates shared by several entries, 2 unused gates."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    e = num_entries or rng.randint(1, 40)
    u = rng.randint(1, min(e, 6))
    xs = [_tensor(shape, dtype, device, layout, gen).requires_grad_(i == 0 or rng.random() < 0.7) for i in range(u)]
    num_gates = max(1, e // 2)
    sources = list(range(u)) + [rng.randrange(u) for _ in range(e - u)]  # every tensor used at least once
    rng.shuffle(sources)
    entries = [(s, rng.choice(kinds), rng.randrange(num_gates)) for s in sources]
    tensors = [xs[s] for s, _, _ in entries]
    w = torch.rand(num_gates + 2, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    return xs, tensors, [k for _, k, _ in entries], [g for _, _, g in entries], w


def _grads(fn, xs, tensors, kinds, gates, w, g):
    out = fn(tensors, kinds, gates, w)
    wanted = [x for x in xs if x.requires_grad] + [w]
    return (out, *torch.autograd.grad(out, wanted, g))


def _assert_close(fused, ref, rtol, equal_nan=False):
    for a, b in zip(fused, ref):
        scale = b[b.isfinite()].abs().max().item() if b.isfinite().any() else 1.0
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * max(1.0, scale), equal_nan=equal_nan)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "strided", "channels_last"])
@pytest.mark.parametrize("spatial", SPATIAL)
@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_float32(device, layout, spatial, seed):
    shape = (2, 3, *spatial)
    xs, tensors, kinds, gates, w = _random_node(seed * 97 + spatial[1], shape, torch.float32, device, layout)
    w = w.detach().float().requires_grad_()
    g = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
    fused = _grads(node_sum, xs, tensors, kinds, gates, w, g)
    _assert_close(fused, _grads(node_sum_ref, xs, tensors, kinds, gates, w, g), rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(2, 16, 7, 9), (3, 5, 1, 4), (2, 9, 4, 1), (1, 12, 2, 2), (2, 1, 5, 5),
                                   (2, 24, 1, 1)])
@pytest.mark.parametrize("seed", range(3))
def test_channels_last_equals_nchw_and_keeps_layout(device, shape, seed):
    # Pooling over channels_last planes (all channels interleaved) must give, element by element, the
    # sums of the NCHW path in the same order, hence the same float64 bits, and keep the layout. (The
    # gate gradient's dot products are split into other tasks, so it only matches to rounding.)
    xs, tensors, kinds, gates, w = _random_node(seed, shape, torch.float64, device)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)
    nchw = _grads(node_sum, xs, tensors, kinds, gates, w, g)
    cl_xs = [x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(x.requires_grad) for x in xs]
    cl_tensors = [cl_xs[next(j for j, x in enumerate(xs) if x is t)] for t in tensors]
    cl = _grads(node_sum, cl_xs, cl_tensors, kinds, gates, w, g.contiguous(memory_format=torch.channels_last))
    ref = _grads(node_sum_ref, xs, tensors, kinds, gates, w, g)
    _assert_close(cl, ref, rtol=1e-12)
    for a, b in zip(cl[:-1], nchw[:-1]):
        assert torch.equal(a, b)
    pooled = any(k != Kind.IDENTITY for k in kinds)
    if shape[1] > 1 and shape[2] * shape[3] > 1:
        for t in cl[:-1]:
            assert t.is_contiguous(memory_format=torch.channels_last) and (not pooled or not t.is_contiguous())


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_layouts_follow_the_first_input(device):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 6, 5, generator=gen, dtype=torch.float64).to(device)
    y = torch.randn(2, 8, 6, 5, generator=gen, dtype=torch.float64).to(device)
    g = torch.randn(2, 8, 6, 5, generator=gen, dtype=torch.float64).to(device)
    kinds, gates = [Kind.MAX_POOL_3X3, Kind.AVG_POOL_3X3, Kind.IDENTITY], [0, 1, 2]
    w = torch.rand(3, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    for first_cl in (True, False):
        a = (x.contiguous(memory_format=torch.channels_last) if first_cl else x).requires_grad_()
        b = (y if first_cl else y.contiguous(memory_format=torch.channels_last)).requires_grad_()
        out = node_sum([a, b, a], kinds, gates, w)
        assert out.is_contiguous(memory_format=torch.channels_last) == first_cl
        fused = (out, *torch.autograd.grad(out, [a, b, w], g))
        ref = _grads(node_sum_ref, [a, b], [a, b, a], kinds, gates, w, g)
        _assert_close(fused, ref, rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_max_pool_ties_follow_pytorch_channels_last(device):
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, 3, (2, 16, 9, 7), generator=gen).to(device, torch.float64)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.tensor([0.7, 1.3], dtype=torch.float64, device=device, requires_grad=True)
    args = ([x, x], [Kind.MAX_POOL_3X3, Kind.AVG_POOL_3X3], [0, 1])
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(device)
    _assert_close(_grads(node_sum, [x], *args, w, g), _grads(node_sum_ref, [x], *args, w, g), rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 5), (4, 1, 1, 1)])
def test_identity_only_any_rank(device, shape):
    xs, tensors, kinds, gates, w = _random_node(len(shape), shape, torch.float64, device, kinds=[Kind.IDENTITY])
    g = torch.randn(shape, dtype=torch.float64).to(device)
    fused = _grads(node_sum, xs, tensors, kinds, gates, w, g)
    _assert_close(fused, _grads(node_sum_ref, xs, tensors, kinds, gates, w, g), rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_many_inputs_and_entries(device):
    # More distinct inputs and gate references than one CUDA launch holds (8 and 64), so entries are
    # split over launches and an input's gradient is continued by a later launch.
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64).to(device).requires_grad_() for _ in range(12)]
    rng = random.Random(0)
    entries = [(s, k, rng.randrange(30)) for s in range(12) for k in KINDS for _ in range(rng.randint(0, 3))]
    entries += [(3, Kind.IDENTITY, j % 30) for j in range(70)]  # one input with 70 identity entries
    rng.shuffle(entries)
    tensors = [xs[s] for s, _, _ in entries]
    kinds, gates = [k for _, k, _ in entries], [gt for _, _, gt in entries]
    w = torch.rand(32, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    g = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64).to(device)
    fused = _grads(node_sum, xs, tensors, kinds, gates, w, g)
    _assert_close(fused, _grads(node_sum_ref, xs, tensors, kinds, gates, w, g), rtol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spatial", SPATIAL)
def test_max_pool_ties_follow_pytorch(device, spatial):
    # Few distinct values: most windows hold several maxima. The gradient must go where PyTorch's goes.
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 3, (2, 3, *spatial), generator=gen).to(device, torch.float64).requires_grad_()
    x2 = torch.full((2, 3, *spatial), -float("inf"), dtype=torch.float64, device=device).requires_grad_()
    for t in (x, x2):
        w = torch.tensor([0.7, 1.3], dtype=torch.float64, device=device, requires_grad=True)
        args = ([t, t], [Kind.MAX_POOL_3X3, Kind.AVG_POOL_3X3], [0, 1])
        g = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(device)
        if t is x2:  # avg of -inf is -inf; keep the gradient finite
            args = ([t], [Kind.MAX_POOL_3X3], [0])
        fused = _grads(node_sum, [t], *args, w, g)
        ref = _grads(node_sum_ref, [t], *args, w, g)
        # A gradient routed to another tied position would be off by O(1), not by rounding. With an
        # all -inf input the gate gradient <-inf, g> is NaN for both.
        _assert_close(fused, ref, rtol=1e-12, equal_nan=True)


def test_max_pool_nan_propagates_like_pytorch():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    x[0, 0, 2, 3] = float("nan")
    x[0, 1, 0, 0] = float("nan")
    x[0, 1, 0, 1] = float("nan")
    x.requires_grad_()
    w = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    fused = _grads(node_sum, [x], [x], [Kind.MAX_POOL_3X3], [0], w, g)
    ref = _grads(node_sum_ref, [x], [x], [Kind.MAX_POOL_3X3], [0], w, g)
    for a, b in zip(fused, ref):
        torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seed", range(3))
def test_half_precision_error_within_twice_pytorch(device, dtype, seed):
    shape = (4, 8, 16, 16)
    xs, tensors, kinds, gates, w = _random_node(seed, shape, dtype, device, num_entries=6 + 4 * seed)
    w = w.detach().float().requires_grad_()
    g = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    exact_xs = [x.detach().double().requires_grad_(x.requires_grad) for x in xs]
    exact_tensors = [exact_xs[next(j for j, x in enumerate(xs) if x is t)] for t in tensors]
    exact_w = w.detach().double().requires_grad_()
    exact = _grads(node_sum_ref, exact_xs, exact_tensors, kinds, gates, exact_w, g.double())
    fused = _grads(node_sum, xs, tensors, kinds, gates, w, g)
    same_dtype = _grads(node_sum_ref, xs, tensors, kinds, gates, w, g)
    for i, (e, f, s) in enumerate(zip(exact, fused, same_dtype)):
        err_fused = (f.double() - e).abs().max().item()
        err_torch = (s.double() - e).abs().max().item()
        assert err_fused <= 2 * err_torch + 1e-6 * e.abs().max().item(), (i, err_fused, err_torch)


@pytest.mark.parametrize("spatial", [(1, 1), (3, 5), (4, 4)])
def test_gradcheck_float64(spatial):
    gen = torch.Generator().manual_seed(spatial[1])
    a = torch.randn(2, 2, *spatial, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 2, *spatial, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.rand(4, generator=gen, dtype=torch.float64, requires_grad=True)
    kinds = [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3, Kind.AVG_POOL_3X3, Kind.IDENTITY, Kind.MAX_POOL_3X3]
    gates = [0, 1, 2, 1, 3, 0]
    assert torch.autograd.gradcheck(lambda w, a, b: node_sum([a, a, a, b, b, b], kinds, gates, w), (w, a, b))


def test_gate_gradient_is_deterministic():
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randn(64, 16, 32, 32, generator=gen) for _ in range(2))
    w = torch.rand(3, requires_grad=True)
    g = torch.randn(64, 16, 32, 32, generator=gen)
    args = ([x, x, y, y], [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3, Kind.IDENTITY], [0, 1, 2, 2])
    first = torch.autograd.grad(node_sum(*args, w), w, g)[0]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = torch.autograd.grad(node_sum(*args, w), w, g)[0]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first, single)


def test_saves_only_the_distinct_inputs():
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    y = torch.randn(4, 3, 8, 8, requires_grad=True)
    w = torch.rand(5, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = node_sum([x, x, x, y, y], [0, 1, 2, 1, 2], [0, 1, 2, 3, 4], w)
    assert sorted(t.data_ptr() for t in saved) == sorted(t.data_ptr() for t in (w, x, y))
    out.sum().backward()
    assert x.grad is not None and y.grad is not None and w.grad is not None


def test_inputs_without_grad_only_gate_gradient():
    x = torch.randn(2, 3, 4, 4)
    w = torch.rand(3, requires_grad=True)
    out = node_sum([x, x, x], [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3], [2, 0, 0], w)
    (gw,) = torch.autograd.grad(out.sum(), w)
    ref = torch.nn.functional
    expected = torch.stack([ref.avg_pool2d(x, 3, 1, 1, count_include_pad=False).sum()
                            + ref.max_pool2d(x, 3, 1, 1).sum(), torch.tensor(0.0), x.sum()])
    torch.testing.assert_close(gw, expected)


def test_unused_input_of_the_raw_op_gets_zero_gradient():
    x, y = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    g = torch.randn(2, 3, 4, 4)
    grads, gw = torch.ops.goldnas.node_sum_backward(g, [x, y], [1], [int(Kind.AVG_POOL_3X3)], [0], torch.ones(1),
                                                     True)
    assert torch.equal(grads[0], torch.zeros_like(x))
    assert gw.shape == (1,)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x = torch.randn(2, 3, 5, 7, device=device, requires_grad=True)
    y = torch.randn(2, 3, 5, 7, device=device)
    w = torch.rand(5, device=device, requires_grad=True)
    samples = [
        ([x, y], [0, 0, 0, 1, 1], [0, 1, 2, 2, 0], [0, 1, 2, 1, 4]),
        ([x, y], [0, 1, 1], [0, 0, 0], [3, 3, 0]),
        ([x.contiguous(memory_format=torch.channels_last)], [0], [1], [2]),
        ([x.contiguous(memory_format=torch.channels_last), y], [0, 1, 0], [2, 1, 0], [2, 0, 1]),
        ([torch.randn(3, 4, device=device, requires_grad=True)], [0, 0], [0, 0], [1, 0]),
    ]
    for inputs, sources, kinds, gates in samples:
        torch.library.opcheck(torch.ops.goldnas.node_sum.default, (inputs, sources, kinds, gates, w))
        g = torch.randn(inputs[0].shape, device=device)
        # The backward op is not itself differentiable (no double backward), so it is checked on plain tensors.
        plain = [t.detach() for t in inputs]
        for need_inputs_grad in (True, False):
            torch.library.opcheck(torch.ops.goldnas.node_sum_backward.default,
                                  (g, plain, sources, kinds, gates, w.detach(), need_inputs_grad))


@pytest.mark.parametrize("kinds", [[Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3], [0, 1, 2]])
def test_reference_compiles_fullgraph(kinds):
    # The reference is what users compare against under torch.compile (and bench_node_sum compiles it):
    # its argument checks must trace (operator.index on a Kind once made dynamo recurse).
    torch._dynamo.reset()
    x = torch.randn(2, 3, 6, 5)
    w = torch.rand(3)
    compiled = torch.compile(lambda x, w: node_sum_ref([x, x, x], kinds, [0, 1, 2], w), fullgraph=True,
                             backend="eager")
    torch.testing.assert_close(compiled(x, w), node_sum_ref([x, x, x], kinds, [0, 1, 2], w))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    kinds = [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.IDENTITY, Kind.MAX_POOL_3X3]

    def f(x, y, w):
        return torch.relu(node_sum([x, x, y, x], kinds, [0, 1, 2, 1], torch.sigmoid(w))) * 2

    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(3, requires_grad=True)
    out = torch.compile(f, fullgraph=True, backend="aot_eager")(x, y, w)
    ref = torch.relu(node_sum_ref([x, x, y, x], kinds, [0, 1, 2, 1], torch.sigmoid(w))) * 2
    torch.testing.assert_close(out, ref)
    for a, b in zip(torch.autograd.grad(out.sum(), [x, y, w]), torch.autograd.grad(ref.sum(), [x, y, w])):
        torch.testing.assert_close(a, b)


# Importing Inductor imports torch.utils.mkldnn, whose classes use the deprecated torch.jit.script_method
# (torch's own code, not ours): silence that import-time warning here.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("channels_last", [False, True])
def test_torch_compile_inductor(channels_last):
    # Inductor checks every real output's strides against the fake registration's (assert_size_stride).
    torch._dynamo.reset()
    kinds = [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3]
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def f(x, y, w):
        return node_sum([x, x, y], kinds, [0, 1, 2], torch.sigmoid(w)) * 2

    x = torch.randn(2, 4, 6, 5).contiguous(memory_format=fmt).requires_grad_()
    y = torch.randn(2, 4, 6, 5).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(3, requires_grad=True)
    out = torch.compile(f, fullgraph=True)(x, y, w)
    ref = node_sum_ref([x, x, y], kinds, [0, 1, 2], torch.sigmoid(w)) * 2
    torch.testing.assert_close(out, ref)
    for a, b in zip(torch.autograd.grad(out.sum(), [x, y, w]), torch.autograd.grad(ref.sum(), [x, y, w])):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("make", [
    lambda: torch.randn(0, 5, 4, 3).contiguous(memory_format=torch.channels_last),  # empty: "contiguous" anyway
    lambda: torch.randn(2, 8, 1, 1).as_strided((2, 8, 1, 1), (8, 1, 8, 8)),  # a channels_last conv's 1x1 output
    lambda: torch.randn(2, 8, 3, 4).contiguous(memory_format=torch.channels_last),
    lambda: torch.randn(2, 1, 3, 4).contiguous(memory_format=torch.channels_last),  # both layouts at once
    lambda: torch.randn(2, 8, 6, 4)[:, :, ::2],  # not dense
    lambda: torch.randn(2, 8, 3, 4),
])
def test_fake_registration_gives_the_real_strides(make):
    from torch._subclasses.fake_tensor import FakeTensorMode

    x = make()
    y = torch.randn(x.shape)
    w = torch.rand(3)
    for sources, kinds in (([0, 0, 1], [0, 1, 2]), ([0, 1, 1], [0, 0, 0])):
        args = ([x, y], sources, kinds, [0, 1, 2], w)
        real = torch.ops.goldnas.node_sum(*args)
        real_grads, _ = torch.ops.goldnas.node_sum_backward(torch.randn(x.shape), *args, True)
        with FakeTensorMode() as mode:
            fake_args = ([mode.from_tensor(x), mode.from_tensor(y)], sources, kinds, [0, 1, 2], mode.from_tensor(w))
            fake = torch.ops.goldnas.node_sum(*fake_args)
            fake_grads, _ = torch.ops.goldnas.node_sum_backward(mode.from_tensor(torch.randn(x.shape)), *fake_args,
                                                                True)
        assert real.stride() == fake.stride(), (sources, kinds)
        assert [g.stride() for g in real_grads] == [g.stride() for g in fake_grads], (sources, kinds)
    # mixed_sum shares the identity-only layout rule
    real = torch.ops.goldnas.mixed_sum([x, y], w[:2])
    real_grads, _ = torch.ops.goldnas.mixed_sum_backward(torch.randn(x.shape), [x, y], w[:2], True)
    same = torch.ops.goldnas.mixed_sum([x, x], w[:2])
    w2 = w[:2].clone()
    with FakeTensorMode() as mode:
        fx, fy, fw = mode.from_tensor(x), mode.from_tensor(y), mode.from_tensor(w2)
        fake = torch.ops.goldnas.mixed_sum([fx, fy], fw)
        fake_grads, _ = torch.ops.goldnas.mixed_sum_backward(mode.from_tensor(torch.randn(x.shape)), [fx, fy], fw, True)
        fake_same = torch.ops.goldnas.mixed_sum([fx, fx], fw)
    assert real.stride() == fake.stride() and same.stride() == fake_same.stride()
    assert [g.stride() for g in real_grads] == [g.stride() for g in fake_grads]


@pytest.mark.parametrize("shape", [(2, 64, 48, 48), (1, 128, 64, 64)])
def test_channels_last_gate_gradient_accuracy(shape):
    # A channels_last plane is a whole image; its gate-gradient dot products must still be added up in
    # double often enough to stay as accurate as the NCHW planes (float32 error ~1e-8 relative).
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=gen) + 0.5).contiguous(memory_format=torch.channels_last)
    g = (torch.randn(shape, generator=gen) + 0.5).contiguous(memory_format=torch.channels_last)
    args = ([0, 1, 2], [0, 1, 2])
    w = torch.rand(3, generator=gen, dtype=torch.float64, requires_grad=True)
    exact = torch.autograd.grad(node_sum([x.double()] * 3, *args, w), w, g.double())[0]
    w32 = w.detach().float().requires_grad_()
    got = torch.autograd.grad(node_sum([x] * 3, *args, w32), w32, g)[0]
    assert ((got.double() - exact).abs() / exact.abs()).max() < 2e-7


def _x(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ([], [], [], torch.rand(1)), "at least one"),
        (lambda: ([_x(1, 1, 3, 3)], [0, 0], [0], torch.rand(1)), "kinds has 2 entries"),
        (lambda: ([_x(1, 1, 3, 3)], [0], [0, 0], torch.rand(1)), "gates has 2 entries"),
        (lambda: ([_x(1, 1, 3, 3)], [7], [0], torch.rand(1)), r"kinds\[0\] = 7 is not"),
        (lambda: ([_x(1, 1, 3, 3)], ["max"], [0], torch.rand(1)), r"kinds\[0\] = 'max' is not"),
        (lambda: ([_x(1, 1, 3, 3)], [1.5], [0], torch.rand(1)), r"kinds\[0\] = 1.5 is not"),
        (lambda: ([_x(3, 3)], [Kind.AVG_POOL_3X3], [np.int64(0)], torch.rand(1)), "pooling kinds need 4-D"),
        (lambda: ([_x(1, 1, 3, 3)], [0], [1], torch.rand(1)), r"gates\[0\] = 1 is out of range"),
        (lambda: ([_x(1, 1, 3, 3)], [0], [-1], torch.rand(1)), r"gates\[0\] = -1 is out of range"),
        (lambda: ([_x(1, 1, 3, 3)], [0], [0.0], torch.rand(1)), r"gates\[0\] = 0.0 is out of range"),
        (lambda: ([_x(1, 1, 3, 3), _x(1, 1, 3, 4)], [0, 0], [0, 0], torch.rand(1)), r"tensors\[1\] has shape"),
        (lambda: ([_x(2, 2), _x(2, 2, dtype=torch.float64)], [0, 0], [0, 0], torch.rand(1)),
         r"tensors\[1\] has dtype"),
        (lambda: ([_x(3, 3)], [Kind.AVG_POOL_3X3], [0], torch.rand(1)), "pooling kinds need 4-D"),
        (lambda: ([_x(1, 3, 3)], [Kind.MAX_POOL_3X3], [0], torch.rand(1)), "pooling kinds need 4-D"),
        (lambda: ([torch.arange(4)], [0], [0], torch.rand(1)), "floating-point"),
        (lambda: ([_x(3)], [0], [0], torch.rand(1, 1)), "weights must be 1-D"),
        (lambda: (_x(2, 3), [0], [0], torch.rand(1)), "sequence of tensors"),
    ],
)
def test_bad_input_raises_value_error(make, match):
    tensors, kinds, gates, weights = make()
    with pytest.raises(ValueError, match=match):
        node_sum(tensors, kinds, gates, weights)


@pytest.mark.parametrize(
    "args, match",
    [
        (([], [], [], [], torch.rand(1)), "at least one"),
        (([_x(1, 1, 3, 3)], [], [], [], torch.rand(1)), "sources must hold at least one entry"),
        (([_x(1, 1, 3, 3)], [0, 0], [0], [0, 0], torch.rand(1)), "kinds has 1 entries"),
        (([_x(1, 1, 3, 3)], [0], [0], [0, 0], torch.rand(1)), "gates has 2 entries"),
        (([_x(1, 1, 3, 3)], [1], [0], [0], torch.rand(1)), r"sources\[0\] = 1 is out of range"),
        (([_x(1, 1, 3, 3)], [0], [3], [0], torch.rand(1)), r"kinds\[0\] = 3 is not"),
        (([_x(1, 1, 3, 3)], [0], [-1], [0], torch.rand(1)), r"kinds\[0\] = -1 is not"),
        (([_x(1, 1, 3, 3)], [0], [0], [2], torch.rand(2)), r"gates\[0\] = 2 is out of range"),
        (([_x(1, 1, 3, 3)], [0], [0], [-1], torch.rand(2)), r"gates\[0\] = -1 is out of range"),
        (([_x(1, 1, 3, 3), _x(1, 1, 3, 4)], [0, 1], [0, 0], [0, 0], torch.rand(1)), r"inputs\[1\] has shape"),
        (([_x(5, 5)], [0], [1], [0], torch.rand(1)), "pooling kinds need 4-D"),
        (([_x(1, 1, 3, 3)], [0], [0], [0], torch.rand(1, 1)), "weights must be 1-D"),
    ],
)
def test_bad_input_through_dispatcher_raises_value_error(args, match):
    # The kernels' own checks (csrc/checks.h) raise ValueError: node_sum does not repeat them in Python.
    with pytest.raises(ValueError, match=match):
        torch.ops.goldnas.node_sum(*args)
    inputs = args[0]
    g = torch.randn(inputs[0].shape) if inputs else torch.randn(1)
    with pytest.raises(ValueError, match=match):
        torch.ops.goldnas.node_sum_backward(g, *args, True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs two devices")
def test_tensors_on_other_devices():
    with pytest.raises(ValueError, match="weights is on"):
        node_sum([torch.randn(3, device="cuda")], [0], [0], torch.rand(1))
    with pytest.raises(ValueError, match="is on"):
        node_sum([torch.randn(3, device="cuda"), torch.randn(3)], [0, 0], [0, 0], torch.rand(1, device="cuda"))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_tensors(device):
    x = torch.randn(0, 3, 4, 4, device=device, requires_grad=True)
    w = torch.rand(2, device=device, requires_grad=True)
    out = node_sum([x, x], [Kind.IDENTITY, Kind.MAX_POOL_3X3], [0, 1], w)
    assert out.shape == (0, 3, 4, 4)
    gx, gw = torch.autograd.grad(out.sum(), [x, w])
    assert gx.shape == x.shape and torch.equal(gw, torch.zeros(2, device=device))


# The CUDA matrix: every layout x entry kind (alone and mixed) x dtype, with grad_output in the output's
# layout and in another. References in float64 on the CPU (torch's CPU pooling is right in every layout);
# 16-bit results must stay within twice the error of PyTorch's own same-dtype computation.
CUDA_ONLY = [pytest.param("cuda", marks=pytest.mark.skipif(not cuda_ready(), reason="no CUDA device/kernels"))]
ENTRY_SETS = {
    "identity": [Kind.IDENTITY],
    "avg": [Kind.AVG_POOL_3X3],
    "max": [Kind.MAX_POOL_3X3],
    "identity+avg": [Kind.IDENTITY, Kind.AVG_POOL_3X3],
    "identity+max": [Kind.IDENTITY, Kind.MAX_POOL_3X3],
    "avg+max": [Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3],
    "all": [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.MAX_POOL_3X3, Kind.AVG_POOL_3X3, Kind.IDENTITY],
}
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _other_layout(t: torch.Tensor) -> torch.Tensor:
    """The same values in another layout: NCHW for channels_last, channels_last for NCHW, contiguous for strided."""
    if not t.is_contiguous():
        return t.contiguous()
    return t.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device", CUDA_ONLY)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("entries", list(ENTRY_SETS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("grad_layout", ["same", "other"])
def test_cuda_every_layout_kind_and_dtype(device, layout, entries, dtype, grad_layout):
    kinds = ENTRY_SETS[entries]
    gen = torch.Generator().manual_seed(len(kinds) * 7 + DTYPES.index(dtype))
    shape = (2, 8, 7, 5)
    a = _tensor(shape, dtype, device, layout, gen).requires_grad_()
    b = _tensor(shape, dtype, device, layout, gen).requires_grad_()
    leaves = [a, b] if len(kinds) > 1 else [a]
    tensors = [a if e % 2 == 0 else b for e in range(len(kinds))]
    gates = [e % 3 for e in range(len(kinds))]
    w_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    w = torch.rand(4, generator=gen, dtype=torch.float64).to(device, w_dtype).requires_grad_()
    out = node_sum(tensors, kinds, gates, w)
    assert out.dtype == dtype and out.device.type == "cuda"
    g = torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)
    g = g.contiguous(memory_format=torch.channels_last) if out.is_contiguous(memory_format=torch.channels_last) and \
        not out.is_contiguous() else g
    if grad_layout == "other":
        g = _other_layout(g)
    fused = (out, *torch.autograd.grad(out, [*leaves, w], g))

    def on_cpu64(t):
        return t.detach().to("cpu", torch.float64).requires_grad_()

    leaves64, w64 = [on_cpu64(t) for t in leaves], on_cpu64(w)
    exact = _grads(node_sum_ref, leaves64, [leaves64[0] if t is a else leaves64[1] for t in tensors], kinds, gates,
                   w64, g.to("cpu", torch.float64))
    if dtype in (torch.float32, torch.float64):
        for f, e in zip(fused, exact):
            _assert_close([f.cpu().double()], [e], rtol=1e-5 if dtype == torch.float32 else 1e-12)
        return
    same_dtype = _grads(node_sum_ref, leaves, tensors, kinds, gates, w, g)
    for i, (f, e, s) in enumerate(zip(fused, exact, same_dtype)):
        err_fused = (f.cpu().double() - e).abs().max().item()
        err_torch = (s.cpu().double() - e).abs().max().item()
        assert err_fused <= 2 * err_torch + 1e-6 * e.abs().max().item(), (i, err_fused, err_torch)


# Gate gradient paths of the CUDA backward: summed straight into grad_w where weights have the accumulation
# type (float32 for 16-bit and float32 inputs, float64 for float64), through a scratch copy otherwise; zeroed by
# the first launch's scatter (120 gates, most unused), then completed by later launches (12 inputs, > 64 refs).
GATE_PATHS = [(torch.float32, torch.float32), (torch.float32, torch.float64), (torch.float64, torch.float32),
              (torch.float64, torch.float64), (torch.bfloat16, torch.float32), (torch.float16, torch.bfloat16)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, w_dtype", GATE_PATHS, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gate_gradient_dtype_over_several_launches(device, dtype, w_dtype, layout):
    gen = torch.Generator().manual_seed(3)
    xs = [_tensor((2, 3, 5, 4), dtype, device, layout, gen).requires_grad_() for _ in range(12)]
    rng = random.Random(3)
    entries = [(s, k, rng.randrange(40)) for s in range(12) for k in KINDS for _ in range(rng.randint(0, 2))]
    entries += [(5, Kind.MAX_POOL_3X3, 40 + j % 7) for j in range(70)]
    rng.shuffle(entries)
    tensors = [xs[s] for s, _, _ in entries]
    kinds, gates = [k for _, k, _ in entries], [gt for _, _, gt in entries]
    w = torch.rand(120, generator=gen, dtype=torch.float64).to(device, w_dtype).requires_grad_()
    g = _tensor((2, 3, 5, 4), dtype, device, layout, gen)
    out = node_sum(tensors, kinds, gates, w)
    grads = torch.autograd.grad(out, [*xs, w], g)
    assert grads[-1].dtype == w_dtype and grads[-1].device == w.device
    assert torch.equal(grads[-1][47:].cpu(), torch.zeros(73, dtype=w_dtype))  # unused gates
    # Exact (float64) gradients of the same rounded values.
    xs64 = [x.detach().to("cpu", torch.float64).requires_grad_() for x in xs]
    w64 = w.detach().to("cpu", torch.float64).requires_grad_()
    exact = _grads(node_sum_ref, xs64, [xs64[s] for s, _, _ in entries], kinds, gates, w64, g.to("cpu", torch.float64))
    rtol = {torch.float64: 1e-11, torch.float32: 1e-5}.get(dtype, 2e-2)
    w_rtol = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-11 if w_dtype == dtype == torch.float64 else 1e-5
    _assert_close([out.cpu().double()], [exact[0]], rtol)
    _assert_close([t.cpu().double() for t in grads[:-1]], exact[1:-1], rtol)
    _assert_close([grads[-1].cpu().double()], [exact[-1]], w_rtol)
