"""mixed_sum against mixed_sum_ref: values, gradients, half-precision error, registration, bad input."""
from __future__ import annotations

import zlib

import pytest
import torch

from goldnas_fast.ops import mixed_sum, mixed_sum_ref
from tests.conftest import DEVICES, cuda_ready

SHAPES = [(7,), (3, 5), (2, 3, 5, 7), (4, 16, 32, 32), (1, 1, 1, 1), (5, 3, 1, 9), (3, 4099)]  # last: partial block
KS = [1, 2, 5, 8, 9, 17, 32]


def _make(shape, k, dtype, device, layout, gen):
    xs = []
    for _ in range(k):
        if layout == "strided":
            big = torch.randn(*shape[:-1], shape[-1] * 2, generator=gen, dtype=torch.float64)
            x = big.to(device=device, dtype=dtype)[..., ::2]
        elif layout == "channels_last" and len(shape) == 4:
            x = torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
        xs.append(x.requires_grad_())
    w = torch.rand(k, generator=gen, dtype=torch.float64).to(device=device, dtype=torch.float32).requires_grad_()
    return xs, w


def _grads(fn, xs, w, g):
    out = fn(xs, w)
    return (out, *torch.autograd.grad(out, [*xs, w], g))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "strided", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", KS)
def test_matches_reference_float32(device, layout, shape, k):
    gen = torch.Generator().manual_seed(zlib.crc32(repr((layout, shape, k)).encode()))
    xs, w = _make(shape, k, torch.float32, device, layout, gen)
    g = torch.randn(shape, generator=gen).to(device)
    fused = _grads(mixed_sum, xs, w, g)
    ref = _grads(mixed_sum_ref, xs, w, g)
    for a, b in zip(fused[:-1], ref[:-1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, b.abs().max().item()))
    # A gate gradient is a dot product over every element: float32 rounding of either summation order
    # grows with the sum of the magnitudes of its terms, not with the (possibly cancelling) result.
    terms = torch.stack([(x.detach().abs() * g.abs()).sum() for x in xs])
    torch.testing.assert_close(fused[-1], ref[-1], rtol=0, atol=2e-6 * terms.max().item())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("k", [1, 3, 8, 20])
def test_half_precision_error_within_twice_pytorch(device, dtype, k):
    gen = torch.Generator().manual_seed(k)
    shape = (8, 16, 16, 16)
    xs, w = _make(shape, k, dtype, device, "contiguous", gen)
    g = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    exact_xs = [x.detach().double().requires_grad_() for x in xs]
    exact_w = w.detach().double().requires_grad_()
    exact = _grads(mixed_sum_ref, exact_xs, exact_w, g.double())
    fused = _grads(mixed_sum, xs, w, g)
    same_dtype = _grads(mixed_sum_ref, xs, w, g)
    for name, e, f, s in zip(["out", *[f"grad_x{i}" for i in range(k)], "grad_w"], exact, fused, same_dtype):
        err_fused = (f.double() - e).abs().max().item()
        err_torch = (s.double() - e).abs().max().item()
        assert err_fused <= 2 * err_torch + 1e-6 * e.abs().max().item(), (name, err_fused, err_torch)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_gradcheck_float64(k):
    gen = torch.Generator().manual_seed(k)
    xs = [torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(k)]
    w = torch.rand(k, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, *xs: mixed_sum(list(xs), w), (w, *xs))


def test_gate_gradient_is_deterministic():
    gen = torch.Generator().manual_seed(0)
    xs, w = _make((64, 16, 32, 32), 5, torch.float32, "cpu", "contiguous", gen)
    g = torch.randn(64, 16, 32, 32, generator=gen)
    first = torch.autograd.grad(mixed_sum(xs, w), w, g)[0]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = torch.autograd.grad(mixed_sum(xs, w), w, g)[0]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first, single)


def test_inputs_without_grad_only_gate_gradient():
    xs = [torch.randn(3, 4) for _ in range(3)]
    w = torch.rand(3, requires_grad=True)
    out = mixed_sum(xs, w)
    (gw,) = torch.autograd.grad(out.sum(), w)
    torch.testing.assert_close(gw, torch.stack([x.sum() for x in xs]))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for k, shape in [(1, (3,)), (4, (2, 3, 4, 5)), (9, (5, 7))]:
        xs = [torch.randn(shape, device=device, requires_grad=bool(i % 2 == 0)) for i in range(k)]
        w = torch.rand(k, device=device, requires_grad=True)
        torch.library.opcheck(torch.ops.goldnas.mixed_sum.default, (xs, w))
        g = torch.randn(shape, device=device)
        # The backward op is not itself differentiable (no double backward), so it is checked on plain tensors.
        plain = [x.detach() for x in xs]
        for need_inputs_grad in (True, False):
            torch.library.opcheck(torch.ops.goldnas.mixed_sum_backward.default,
                                  (g, plain, w.detach(), need_inputs_grad))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def f(xs, w):
        return torch.relu(mixed_sum(xs, torch.sigmoid(w))) * 2

    xs = [torch.randn(2, 3, 8, 8, requires_grad=True) for _ in range(4)]
    w = torch.randn(4, requires_grad=True)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(xs, w)
    ref = torch.relu(mixed_sum_ref(xs, torch.sigmoid(w))) * 2
    torch.testing.assert_close(out, ref)
    ga = torch.autograd.grad(out.sum(), [*xs, w])
    gb = torch.autograd.grad(ref.sum(), [*xs, w])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ([], torch.rand(0)), "at least one"),
        (lambda: ([torch.randn(3), torch.randn(4)], torch.rand(2)), r"inputs\[1\] has shape"),
        (lambda: ([torch.randn(3), torch.randn(3, dtype=torch.float64)], torch.rand(2)), r"inputs\[1\] has dtype"),
        (lambda: ([torch.randn(3), torch.randn(3)], torch.rand(3)), "weights has 3 entries"),
        (lambda: ([torch.randn(3)], torch.rand(1, 1)), "weights must be 1-D"),
        (lambda: ([torch.arange(3), torch.arange(3)], torch.rand(2)), "floating-point"),
        (lambda: ([torch.randn(3)], torch.tensor([1])), "weights must be floating-point"),
        (lambda: (torch.randn(2, 3), torch.rand(2)), "sequence of tensors"),
        (lambda: ([torch.randn(3), "x"], torch.rand(2)), r"inputs\[1\] must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_value_error(make, match):
    inputs, weights = make()
    with pytest.raises(ValueError, match=match):
        mixed_sum(inputs, weights)


def test_bad_input_through_dispatcher_raises_value_error():
    # The kernels' own checks (csrc/checks.h) raise ValueError: mixed_sum does not repeat them in Python.
    with pytest.raises(ValueError, match="inputs\\[1\\] has shape"):
        torch.ops.goldnas.mixed_sum([torch.randn(3), torch.randn(4)], torch.rand(2))
    with pytest.raises(ValueError, match="weights has 3 entries"):
        torch.ops.goldnas.mixed_sum([torch.randn(3)], torch.rand(3))
    with pytest.raises(ValueError, match="grad_out must match"):
        torch.ops.goldnas.mixed_sum_backward(torch.randn(4), [torch.randn(3)], torch.rand(1), True)
    with pytest.raises(ValueError, match="weights has 3 entries"):
        torch.ops.goldnas.mixed_sum_backward(torch.randn(3), [torch.randn(3)], torch.rand(3), True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs two devices")
def test_weights_on_other_device():
    with pytest.raises(ValueError, match="weights is on"):
        mixed_sum([torch.randn(3, device="cuda")], torch.rand(1))


def test_empty_tensors():
    xs = [torch.randn(0, 3, requires_grad=True) for _ in range(2)]
    w = torch.rand(2, requires_grad=True)
    out = mixed_sum(xs, w)
    assert out.shape == (0, 3)
    (gw,) = torch.autograd.grad(out.sum(), w)
    assert torch.equal(gw, torch.zeros(2))


_CAPABILITY_SCRIPT = """
import sys, torch
from goldnas_fast._library import cpu_capability
from goldnas_fast.ops import mixed_sum
gen = torch.Generator().manual_seed(0)
results = {"capability": cpu_capability()}
for n, k in ((1, 1), (37, 2), (5003, 5), (70001, 8), (40000, 12)):
    xs = [torch.randn(n, generator=gen).requires_grad_() for _ in range(k)]
    w = torch.rand(k, generator=gen, requires_grad=True)
    g = torch.randn(n, generator=gen)
    out = mixed_sum(xs, w)
    results[(n, k)] = (out, *torch.autograd.grad(out, [*xs, w], g))
    frozen = [x.detach() for x in xs]  # gate gradient only
    results[(n, k, "w")] = torch.autograd.grad(mixed_sum(frozen, w), w, g)
torch.save(results, sys.argv[1])
"""


def test_cpu_capability_builds_agree_bit_for_bit(tmp_path):
    # float32 mixed_sum runs an AVX2 build of its loops where the CPU has AVX2; the baseline build must give
    # the same bits (same summation order, no FMA contraction), so results do not depend on the CPU.
    import os
    import subprocess
    import sys

    runs = {}
    for name, env in (("default", {}), ("baseline", {"GOLDNAS_CPU_CAPABILITY": "baseline"})):
        path = tmp_path / f"{name}.pt"
        subprocess.run([sys.executable, "-c", _CAPABILITY_SCRIPT, str(path)], check=True,
                       env={**os.environ, **env})
        runs[name] = torch.load(path)
    assert runs["baseline"].pop("capability") == "baseline"
    capability = runs["default"].pop("capability")
    if capability != "avx2":
        pytest.skip(f"this CPU or build has no AVX2 loops ({capability})")
    for key, want in runs["baseline"].items():
        for a, b in zip(runs["default"][key], want):
            assert torch.equal(a, b), key


CUDA_ONLY = [pytest.param("cuda", marks=pytest.mark.skipif(not cuda_ready(), reason="no CUDA device/kernels"))]


@pytest.mark.parametrize("device", CUDA_ONLY)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("k", [1, 3, 9, 17])  # 9 and 17: several backward and forward launches
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("grad_layout", ["same", "other"])
def test_cuda_every_layout_and_dtype(device, layout, k, dtype, grad_layout):
    # References in float64 on the CPU; 16-bit results within twice the error of PyTorch's own computation.
    gen = torch.Generator().manual_seed(k)
    shape = (3, 8, 5, 7)
    xs, w = _make(shape, k, dtype, device, layout, gen)
    if dtype == torch.float64:  # float32 gate gradients would round to 1e-7
        w = w.detach().double().requires_grad_()
    out = mixed_sum(xs, w)
    g = torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)
    if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
        g = g.contiguous(memory_format=torch.channels_last)
    if grad_layout == "other":
        g = g.contiguous() if not g.is_contiguous() else g.contiguous(memory_format=torch.channels_last)
    fused = (out, *torch.autograd.grad(out, [*xs, w], g))
    exact_xs = [x.detach().to("cpu", torch.float64).requires_grad_() for x in xs]
    exact_w = w.detach().to("cpu", torch.float64).requires_grad_()
    exact = _grads(mixed_sum_ref, exact_xs, exact_w, g.to("cpu", torch.float64))
    if dtype in (torch.float32, torch.float64):
        rtol = 1e-5 if dtype == torch.float32 else 1e-12
        for f, e in zip(fused, exact):
            torch.testing.assert_close(f.cpu().double(), e, rtol=rtol, atol=rtol * max(1.0, e.abs().max().item()))
        return
    same_dtype = _grads(mixed_sum_ref, xs, w, g)
    for i, (f, e, s) in enumerate(zip(fused, exact, same_dtype)):
        err_fused = (f.cpu().double() - e).abs().max().item()
        err_torch = (s.cpu().double() - e).abs().max().item()
        assert err_fused <= 2 * err_torch + 1e-6 * e.abs().max().item(), (i, err_fused, err_torch)


# Gate gradient paths of the CUDA backward: summed straight into grad_w where weights have the accumulation
# type, through a scratch copy otherwise; K = 17: three backward launches.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, w_dtype", [(torch.float32, torch.float32), (torch.float32, torch.float64),
                                            (torch.float64, torch.float32), (torch.bfloat16, torch.float32),
                                            (torch.float16, torch.bfloat16)], ids=str)
def test_gate_gradient_dtype(device, dtype, w_dtype):
    gen = torch.Generator().manual_seed(5)
    xs, w = _make((3, 8, 5, 7), 17, dtype, device, "channels_last", gen)
    w = w.detach().to(w_dtype).requires_grad_()
    g = torch.randn(3, 8, 5, 7, generator=gen, dtype=torch.float64).to(device, dtype)
    fused = _grads(mixed_sum, xs, w, g.contiguous(memory_format=torch.channels_last))
    assert fused[-1].dtype == w_dtype
    exact_xs = [x.detach().to("cpu", torch.float64).requires_grad_() for x in xs]
    exact = _grads(mixed_sum_ref, exact_xs, w.detach().to("cpu", torch.float64).requires_grad_(), g.cpu().double())
    rtol = 1e-5 if dtype in (torch.float32, torch.float64) else 2e-2
    for f, e in zip(fused, exact):
        torch.testing.assert_close(f.cpu().double(), e, rtol=rtol, atol=rtol * max(1.0, e.abs().max().item()))
