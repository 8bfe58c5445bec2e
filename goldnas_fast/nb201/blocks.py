"""Building blocks of NAS-Bench-201 networks (``AutoDL-Projects:xautodl/models/cell_operations.py``).

Shared by the discrete evaluation network (``network.py``: affine BN with running statistics,
bias-free convs) and the search supernet (affine-free BN, convs with bias, possibly batch-statistics
BN), hence the ``affine`` / ``track_running_stats`` / ``bias`` switches. Inside each block, module
names follow the official code (``op.1.weight``, ``conv_a``, ``downsample.1.weight``).
"""
from __future__ import annotations

import torch
from torch import nn

from goldnas_fast.nb201.arch import OPS
from goldnas_fast.ops.pooling import PaddedAvgPool3x3

__all__ = ["ReLUConvBN", "Zero", "ResNetBasicBlock", "Stem", "Head", "make_op"]


class ReLUConvBN(nn.Module):
    """``ReLU -> Conv2d -> BatchNorm2d`` (the ``nor_conv_kxk`` ops and the reduction convs).

    Args:
        bias: conv bias; ``None`` means the official ``bias = not affine``.
    """

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int = 1,
                 affine: bool = True, track_running_stats: bool = True, bias: bool | None = None) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      bias=(not affine) if bias is None else bias),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    def as_sequential(self) -> nn.Sequential:
        """The Sequential this block runs (lets a fused cell share its leading ReLU)."""
        return self.op


class Zero(nn.Module):
    """The ``none`` op: ``x * 0`` (zeros of ``x``'s shape that stay in the autograd graph)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ResNetBasicBlock(nn.Module):
    """Fixed reduction block: ``conv_b(conv_a(x)) + downsample(x)``.

    ``conv_a`` = ReLUConvBN 3x3 stride ``stride``, ``conv_b`` = ReLUConvBN 3x3 stride 1; for stride 2
    the shortcut is ``AvgPool2d(2, 2)`` then a bias-free 1x1 conv with **no** BN. NAS-Bench-201 uses
    ``affine=True, track_running_stats=True`` here, in search supernets too.
    """

    def __init__(self, C_in: int, C_out: int, stride: int = 2, affine: bool = True,
                 track_running_stats: bool = True, bias: bool | None = None) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1, 1, affine, track_running_stats, bias)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, 1, affine, track_running_stats, bias)
        self.downsample: nn.Module | None
        if stride == 2:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                nn.Conv2d(C_in, C_out, kernel_size=1, stride=1, padding=0, bias=False),
            )
        elif C_in != C_out:
            self.downsample = ReLUConvBN(C_in, C_out, 1, 1, 0, 1, affine, track_running_stats, bias)
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


class Stem(nn.Sequential):
    """``Conv2d(3, C, 3, padding=1, bias=False)`` then ``BatchNorm2d(C)``; no ReLU."""

    def __init__(self, C: int, in_channels: int = 3, affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__(
            nn.Conv2d(in_channels, C, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(C, affine=affine, track_running_stats=track_running_stats),
        )


class Head(nn.Module):
    """``lastact`` (BN + ReLU), global average pool, ``Linear(C, num_classes)``; returns logits."""

    def __init__(self, C: int, num_classes: int, affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.lastact = nn.Sequential(nn.BatchNorm2d(C, affine=affine, track_running_stats=track_running_stats),
                                     nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.global_pooling(self.lastact(x))
        return self.classifier(out.flatten(1))


def make_op(name: str, C: int, affine: bool = True, track_running_stats: bool = True,
            bias: bool | None = None) -> nn.Module:
    """One cell op (stride 1, ``C -> C`` channels) by NAS-Bench-201 name.

    ``none`` -> :class:`Zero`; ``skip_connect`` -> ``nn.Identity``; ``nor_conv_1x1`` / ``nor_conv_3x3``
    -> :class:`ReLUConvBN`; ``avg_pool_3x3`` -> ``AvgPool2d(3, 1, 1, count_include_pad=False)``.
    """
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(C, C, 1, 1, 0, 1, affine, track_running_stats, bias)
    if name == "nor_conv_3x3":
        return ReLUConvBN(C, C, 3, 1, 1, 1, affine, track_running_stats, bias)
    if name == "avg_pool_3x3":
        return PaddedAvgPool3x3(stride=1)
    raise ValueError(f"unknown op {name!r}; expected one of {list(OPS)}")
