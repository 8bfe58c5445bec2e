"""node_sum's CUDA kernels, emulated on the CPU: the test-only op goldnas::_node_sum_emulate_cuda runs, element
by element on the host, the very functions that the CUDA threads run (csrc/node_sum_launch.h and
csrc/pool_index.h: plane positions, NCHW/NHWC offsets, 3x3 windows, count_include_pad=False divisors, the
gather-form adjoints, the launch plan and the gate scatter). Comparing it with node_sum_ref catches index
bugs of the CUDA kernels on a machine without a GPU."""
from __future__ import annotations

import random

import pytest
import torch

from goldnas_fast.ops import Kind, node_sum, node_sum_ref
from tests.test_node_sum import KINDS, _tensor

pytestmark = pytest.mark.usefixtures("single_thread")

# Planes of every edge case: one pixel, one row, one column, 2x2 (every pixel on the border), odd sizes.
SHAPES = [(2, 3, 1, 1), (2, 3, 1, 7), (2, 3, 6, 1), (1, 5, 2, 2), (2, 1, 5, 4), (2, 4, 5, 6), (1, 16, 9, 7),
          (3, 2, 3, 3)]
LAYOUTS = ["contiguous", "channels_last", "strided"]


def _emulate(tensors, kinds, gates, w, g):
    """(out, grads of the distinct inputs in order of first appearance, grad_w) of the emulated CUDA kernels."""
    index: dict[int, int] = {}
    sources = [index.setdefault(id(t), len(index)) for t in tensors]
    inputs = list({id(t): t for t in tensors}.values())
    out, grads, gw = torch.ops.goldnas._node_sum_emulate_cuda(g, [t.detach() for t in inputs], sources,
                                                              [int(k) for k in kinds], gates, w.detach())
    return out, grads, gw, inputs


def _reference(inputs, tensors, kinds, gates, w, g):
    out = node_sum_ref(tensors, kinds, gates, w)
    return (out, *torch.autograd.grad(out, [*inputs, w], g))


def _node(seed, shape, dtype, layout, num_entries=None, kinds=KINDS):
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    e = num_entries or rng.randint(1, 12)
    u = rng.randint(1, min(e, 4))
    xs = [_tensor(shape, dtype, "cpu", layout, gen).requires_grad_() for _ in range(u)]
    sources = list(range(u)) + [rng.randrange(u) for _ in range(e - u)]
    rng.shuffle(sources)
    kinds = [rng.choice(kinds) for _ in sources]
    num_gates = max(1, e // 2)
    gates = [rng.randrange(num_gates) for _ in sources]
    w = torch.rand(num_gates + 1, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    g = _tensor(shape, dtype, "cpu", layout, gen)
    return [xs[s] for s in sources], kinds, gates, w, g


def _assert_close(got, want, rtol):
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", range(3))
def test_emulated_cuda_kernels_match_reference_float64(layout, shape, seed):
    tensors, kinds, gates, w, g = _node(seed * 31 + shape[3], shape, torch.float64, layout)
    out, grads, gw, inputs = _emulate(tensors, kinds, gates, w, g)
    ref = _reference(inputs, tensors, kinds, gates, w, g)
    _assert_close(out, ref[0], 1e-12)
    for got, want in zip(grads, ref[1:-1]):
        _assert_close(got, want, 1e-12)
    _assert_close(gw, ref[-1], 1e-12)
    pooled = any(k != Kind.IDENTITY for k in kinds)
    if layout == "channels_last" and pooled and shape[1] > 1 and shape[2] * shape[3] > 1:
        # The NHWC planes were really walked (no silent NCHW copy).
        assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_each_kind_alone_with_distinct_values(kind, layout):
    # One entry, all values distinct (arange): an off-by-one in an offset or a window moves a value and
    # cannot cancel out.
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float64).reshape(2, 3, 5, 4)
    x = x.contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    x.requires_grad_()
    g = torch.linspace(-2, 3, x.numel(), dtype=torch.float64).reshape(x.shape)
    w = torch.tensor([0.75], dtype=torch.float64, requires_grad=True)
    out, grads, gw, _ = _emulate([x], [kind], [0], w, g)
    ref = _reference([x], [x], [kind], [0], w, g)
    for got, want in zip((out, grads[0], gw), ref):
        _assert_close(got, want, 1e-13)


@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_emulated_cuda_kernels_reduced_precision(dtype, rtol, layout):
    # Same dtype handling as the CUDA kernels (acc_t = float32 for the 16-bit types); compared with the CPU
    # kernels, which accumulate the same way.
    tensors, kinds, gates, w, g = _node(7, (2, 4, 6, 5), dtype, layout, num_entries=6)
    out, grads, gw, inputs = _emulate(tensors, kinds, gates, w, g)
    fused = node_sum(tensors, kinds, gates, w)
    want = torch.autograd.grad(fused, [*inputs, w], g)
    _assert_close(out.float(), fused.float(), rtol)
    for got, ref in zip(grads, want[:-1]):
        _assert_close(got.float(), ref.float(), rtol)
    _assert_close(gw.float(), want[-1].float(), rtol)


def test_emulated_cuda_kernels_many_launches():
    # More distinct inputs (12) and gate references (> 64) than one CUDA launch holds: the forward carries a
    # running sum between launches, an input's gradient is continued by a later launch, and the gate columns
    # of each launch start at its column base.
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
          .requires_grad_() for _ in range(12)]
    rng = random.Random(0)
    entries = [(s, k, rng.randrange(30)) for s in range(12) for k in KINDS for _ in range(rng.randint(0, 3))]
    entries += [(3, Kind.AVG_POOL_3X3, j % 30) for j in range(70)]
    rng.shuffle(entries)
    tensors = [xs[s] for s, _, _ in entries]
    kinds, gates = [k for _, k, _ in entries], [gt for _, _, gt in entries]
    w = torch.rand(32, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    out, grads, gw, inputs = _emulate(tensors, kinds, gates, w, g)
    ref = _reference(inputs, tensors, kinds, gates, w, g)
    _assert_close(out, ref[0], 1e-11)
    for got, want in zip(grads, ref[1:-1]):
        _assert_close(got, want, 1e-11)
    _assert_close(gw, ref[-1], 1e-11)


def test_grad_out_in_another_layout_than_the_inputs():
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(2, 6, 5, 4, dtype=torch.float64)  # NCHW, the inputs channels_last
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    args = ([x, x, x], KINDS, [0, 1, 2])
    out, grads, gw, _ = _emulate(*args, w, g)
    ref = _reference([x], *args, w, g)
    for got, want in zip((out, grads[0], gw), ref):
        _assert_close(got, want, 1e-12)


def test_identity_only_any_rank_and_empty():
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 7, dtype=torch.float64)
    out, grads, gw, _ = _emulate([x, x], [Kind.IDENTITY] * 2, [0, 1], w, g)
    ref = _reference([x], [x, x], [Kind.IDENTITY] * 2, [0, 1], w, g)
    for got, want in zip((out, grads[0], gw), ref):
        _assert_close(got, want, 1e-13)
    e = torch.randn(0, 2, 3, 3, dtype=torch.float64)
    out, grads, gw, _ = _emulate([e], [Kind.MAX_POOL_3X3], [0], w, e)
    assert out.shape == e.shape and torch.equal(gw, torch.zeros(2, dtype=torch.float64))


def test_emulation_checks_its_arguments():
    with pytest.raises(ValueError, match=r"kinds\[0\] = 5 is not"):
        torch.ops.goldnas._node_sum_emulate_cuda(torch.randn(1, 1, 2, 2), [torch.randn(1, 1, 2, 2)], [0], [5], [0],
                                                 torch.rand(1))
