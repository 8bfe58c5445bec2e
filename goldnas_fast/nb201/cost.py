"""Parameters and FLOPs of NAS-Bench-201 evaluation networks by the official counting rule.

Rule (``docs/method/nasbench201.md`` §1.5, ``flop_benchmark.get_model_infos``): params are all ``numel`` of
``model.parameters()`` (BN running statistics are buffers and do not count); FLOPs are the
multiply-accumulates, per image, of ``Conv2d`` and ``Linear`` modules only (plus one per output
element for a bias). BN, ReLU, every pooling, ``none``, ``skip_connect`` and the node sums count 0.
Both are reported in millions (divided by 1e6, not 2**20).

With base width ``C`` (16), ``N`` (5) cells per stage, stage widths ``C_s = C, 2C, 4C`` and
stage resolutions ``h_s = H, H/2, H/4`` (``s = 0, 1, 2``), ``k`` = 1 or 3 for the conv ops::

    FLOPs  = 9*3*C*H^2                                                   (stem)
           + N * sum_s sum_{conv edges} k^2 C_s^2 h_s^2                  (cells)
           + sum_{(Ci,Co,h) in ((C,2C,H/2), (2C,4C,H/4))} (9 Ci Co + 9 Co^2 + Ci Co) h^2
           + 4C*K + K                                                    (classifier)
    params = 9*3*C + 2C + N * sum_s sum_{conv edges} (k^2 C_s^2 + 2 C_s)
           + sum_{(Ci,Co)} (9 Ci Co + 2 Co + 9 Co^2 + 2 Co + Ci Co) + 2*4C + 4C*K + K

so ``FLOPs(arch) = fixed_flops_m(K, H) + N * sum_{s, e} op_flops_m(op_e, s, H)`` (likewise params).
:func:`cost` sums exact integers and divides once, so it equals the official records exactly.
"""
from __future__ import annotations

from typing import NamedTuple

from goldnas_fast.nb201.arch import OPS, ArchLike, to_ops

__all__ = [
    "Cost", "cost", "op_flops_m", "op_params_m", "fixed_flops_m", "fixed_params_m",
    "stage_channels", "stage_sizes", "NUM_STAGES", "KERNEL",
]

NUM_STAGES = 3
KERNEL: dict[str, int] = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
"""Kernel size of the ops that have parameters and FLOPs; the other ops have neither."""


class Cost(NamedTuple):
    """Millions of parameters and of multiply-accumulates (official "FLOPs") per image."""

    params_m: float
    flops_m: float


def _pos_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def stage_channels(C: int = 16) -> tuple[int, int, int]:
    """Channel width of stages 0, 1, 2: ``(C, 2C, 4C)``."""
    C = _pos_int(C, "C")
    return (C, 2 * C, 4 * C)


def stage_sizes(input_size: int = 32) -> tuple[int, int, int]:
    """Feature-map side of stages 0, 1, 2: ``(H, H/2, H/4)``; ``H`` must be a multiple of 4.

    (For odd sides the stride-2 conv (ceil) and the 2x2 average-pool shortcut (floor) of a
    reduction block would disagree, so the network itself would fail.)
    """
    H = _pos_int(input_size, "input_size")
    if H % 4:
        raise ValueError(f"input_size must be a multiple of 4 (32 for CIFAR, 16 for ImageNet16-120), got {H}")
    return (H, H // 2, H // 4)


def _check_stage(stage: object) -> int:
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < NUM_STAGES:
        raise ValueError(f"stage must be 0, 1 or 2 (widths C, 2C, 4C), got {stage!r}")
    return stage


def _check_op(op: object) -> str:
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {list(OPS)}")
    return op  # type: ignore[return-value]


def _op_flops(op: str, stage: int, input_size: int, C: int, bias: bool) -> int:
    k = KERNEL.get(_check_op(op), 0)
    if not k:
        return 0
    c, h = stage_channels(C)[_check_stage(stage)], stage_sizes(input_size)[stage]
    return (k * k * c * c + (c if bias else 0)) * h * h


def _op_params(op: str, stage: int, C: int, affine: bool, bias: bool) -> int:
    k = KERNEL.get(_check_op(op), 0)
    if not k:
        return 0
    c = stage_channels(C)[_check_stage(stage)]
    return k * k * c * c + (2 * c if affine else 0) + (c if bias else 0)


def _fixed_flops(num_classes: int, input_size: int, C: int) -> int:
    K = _pos_int(num_classes, "num_classes")
    H, h1, h2 = stage_sizes(input_size)
    c0, c1, c2 = stage_channels(C)
    reductions = sum((9 * ci * co + 9 * co * co + ci * co) * h * h for ci, co, h in ((c0, c1, h1), (c1, c2, h2)))
    return 9 * 3 * c0 * H * H + reductions + c2 * K + K


def _fixed_params(num_classes: int, C: int) -> int:
    K = _pos_int(num_classes, "num_classes")
    c0, c1, c2 = stage_channels(C)
    reductions = sum(9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co for ci, co in ((c0, c1), (c1, c2)))
    return 9 * 3 * c0 + 2 * c0 + reductions + 2 * c2 + c2 * K + K


def op_flops_m(op: str, stage: int, input_size: int = 32, *, C: int = 16, bias: bool = False) -> float:
    """FLOPs (M) of op ``op`` on one edge of one cell of stage ``stage`` (0, 1, 2).

    ``k^2 C_s^2 h_s^2`` for a k x k conv op, 0 for ``none``, ``skip_connect``, ``avg_pool_3x3``.
    ``bias=True`` adds ``C_s h_s^2`` for a conv bias (search supernets, where ``bias = not affine``).
    """
    return _op_flops(op, stage, input_size, C, bias) / 1e6


def op_params_m(op: str, stage: int, *, C: int = 16, affine: bool = True, bias: bool = False) -> float:
    """Parameters (M) of op ``op`` on one edge of one cell of stage ``stage`` (0, 1, 2).

    ``k^2 C_s^2`` conv weights, ``+ 2 C_s`` for an affine BN, ``+ C_s`` for a conv bias; 0 for the
    parameter-free ops. Defaults are the evaluation network's (affine BN, no bias).
    """
    return _op_params(op, stage, C, affine, bias) / 1e6


def fixed_flops_m(num_classes: int = 10, input_size: int = 32, *, C: int = 16) -> float:
    """FLOPs (M) of everything but the cells: stem conv, both reduction blocks and the classifier."""
    return _fixed_flops(num_classes, input_size, C) / 1e6


def fixed_params_m(num_classes: int = 10, *, C: int = 16) -> float:
    """Parameters (M) of everything but the cells: stem, reduction blocks, last BN, classifier."""
    return _fixed_params(num_classes, C) / 1e6


def cost(arch: ArchLike, num_classes: int = 10, input_size: int = 32, *, C: int = 16, N: int = 5) -> Cost:
    """Official params and FLOPs (millions) of the evaluation network ``TinyNetwork(C, N, arch, K)``.

    Args:
        arch: arch string, official index, or 6 op names in edge order.
        num_classes: ``K``: 10 (CIFAR-10), 100 (CIFAR-100), 120 (ImageNet16-120).
        input_size: input side ``H``: 32 for CIFAR, 16 for ImageNet16-120.
        C: stem width (16 in NAS-Bench-201). N: cells per stage (5 in NAS-Bench-201).
    """
    ops = to_ops(arch)
    N = _pos_int(N, "N")
    flops = _fixed_flops(num_classes, input_size, C)
    params = _fixed_params(num_classes, C)
    for stage in range(NUM_STAGES):
        for op in ops:
            flops += N * _op_flops(op, stage, input_size, C, False)
            params += N * _op_params(op, stage, C, True, False)
    return Cost(params_m=params / 1e6, flops_m=flops / 1e6)
