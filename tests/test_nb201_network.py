"""The discrete NAS-Bench-201 evaluation network: structure, parameter and FLOP counts, cell semantics."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from goldnas_fast.nb201.arch import EDGES, OPS, arch_to_index, format_arch
from goldnas_fast.nb201.blocks import ReLUConvBN, ResNetBasicBlock, Zero, make_op
from goldnas_fast.nb201.cost import cost
from goldnas_fast.nb201.network import InferCell, build_network

ALL_NONE = format_arch(["none"] * 6)
SAMPLE = [0, 11, 284, 1835, 6111, 9930, arch_to_index(ALL_NONE), *random.Random(201).sample(range(15625), 43)]


def _numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _hook_flops(model: nn.Module, x: torch.Tensor) -> float:
    """Independent re-implementation of the official hook count (Conv2d + Linear only), per image / 1e6."""
    total = [0]

    def conv(m: nn.Conv2d, _i: object, out: torch.Tensor) -> None:
        per = m.kernel_size[0] * m.kernel_size[1] * m.in_channels * m.out_channels // m.groups
        total[0] += (per + (m.out_channels if m.bias is not None else 0)) * out[0, 0].numel() * out.shape[0]

    def linear(m: nn.Linear, _i: object, out: torch.Tensor) -> None:
        total[0] += out.shape[0] * (m.in_features * m.out_features + (m.out_features if m.bias is not None else 0))

    hooks = [m.register_forward_hook(conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear) for m in model.modules() if isinstance(m, nn.Linear)]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0] / x.shape[0] / 1e6


@pytest.mark.parametrize("index", SAMPLE)
def test_param_count_equals_cost(index: int) -> None:
    net = build_network(index)
    assert _numel(net) == round(cost(index).params_m * 1e6)


def test_param_count_other_heads() -> None:
    for k in (100, 120):
        assert _numel(build_network(11, num_classes=k)) == round(cost(11, k).params_m * 1e6)
    assert _numel(build_network(11, C=8, N=2)) == round(cost(11, C=8, N=2).params_m * 1e6)


@pytest.mark.parametrize("arch, num_classes, size", [(0, 10, 32), (11, 10, 32), (284, 10, 32),
                                                     (9930, 120, 16), (ALL_NONE, 100, 32)])
def test_flops_by_hooks_equal_cost(arch, num_classes: int, size: int) -> None:
    net = build_network(arch, num_classes=num_classes)
    assert _hook_flops(net, torch.rand(2, 3, size, size)) == pytest.approx(
        cost(arch, num_classes, size).flops_m, abs=1e-9)


def test_forward_shapes_and_training_step() -> None:
    net = build_network(6111)
    out = net(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert build_network(857, num_classes=120)(torch.randn(2, 3, 16, 16)).shape == (2, 120)
    assert build_network(ALL_NONE)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_structure() -> None:
    net = build_network(11)
    assert len(net.cells) == 17
    assert [type(c).__name__ for c in net.cells].count("ResNetBasicBlock") == 2
    stem_conv, stem_bn = net.stem
    assert stem_conv.bias is None and stem_bn.affine and stem_bn.track_running_stats
    assert not any(isinstance(m, nn.ReLU) for m in net.stem)
    block = net.cells[5]
    assert isinstance(block, ResNetBasicBlock)
    assert isinstance(block.downsample[0], nn.AvgPool2d) and block.downsample[1].bias is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.downsample)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            assert m.bias is None
        if isinstance(m, nn.BatchNorm2d):
            assert m.affine and m.track_running_stats
        if isinstance(m, nn.AvgPool2d) and m.kernel_size == 3:
            assert m.count_include_pad is False
    relu_conv_bn = make_op("nor_conv_3x3", 8)
    assert [type(m) for m in relu_conv_bn.op] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d]


def _manual_cell(cell: InferCell, x: torch.Tensor) -> torch.Tensor:
    nodes = [x]
    for t in (1, 2, 3):
        nodes.append(sum(cell.layers[e](nodes[s]) for e, (tt, s) in enumerate(EDGES) if tt == t))
    return nodes[3]


def test_cell_semantics() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    rng = random.Random(3)
    for _ in range(10):
        cell = InferCell([rng.choice(OPS) for _ in EDGES], 8).eval()
        torch.testing.assert_close(cell(x), _manual_cell(cell, x))
    # node 3 = node 0 through skips only: n1 = x, n2 = n1, n3 = n2
    skip_chain = InferCell(["skip_connect", "none", "skip_connect", "none", "none", "skip_connect"], 8)
    assert torch.equal(skip_chain(x), x)
    assert torch.equal(InferCell(["none"] * 6, 8)(x), torch.zeros_like(x))
    # all-skip (arch 1835): n1 = x, n2 = 2x, n3 = x + x + 2x = 4x
    torch.testing.assert_close(InferCell(1835, 8)(x), 4 * x)
    # avg_pool_3x3 excludes padding: a corner averages 4 values
    pool = InferCell(["avg_pool_3x3", "none", "none", "none", "skip_connect", "none"], 8)
    torch.testing.assert_close(pool(x)[..., 0, 0], x[..., :2, :2].mean((-1, -2)))


def test_search_switches() -> None:
    op = ReLUConvBN(8, 8, 3, 1, 1, affine=False, track_running_stats=False)
    conv, bn = op.op[1], op.op[2]
    assert conv.bias is not None and not bn.affine and bn.running_mean is None
    assert ReLUConvBN(8, 8, 1, 1, 0, affine=False, bias=False).op[1].bias is None
    assert make_op("nor_conv_1x1", 4, affine=False).op[1].bias is not None
    assert isinstance(make_op("none", 4), Zero) and isinstance(make_op("skip_connect", 4), nn.Identity)
    with pytest.raises(ValueError, match="unknown op"):
        make_op("sep_conv_3x3", 4)
    with pytest.raises(ValueError, match="out of range"):
        build_network(-1)
    with pytest.raises(ValueError, match="C must be"):
        build_network(0, C=0)
