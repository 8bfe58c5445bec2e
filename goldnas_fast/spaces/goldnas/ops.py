"""The DARTS candidate operators of the GOLD-NAS space, with closed-form FLOPs and parameter counts.

Module structure follows DARTS (``quark0/darts``, ``cnn/operations.py``) and the unofficial GOLD-NAS code
(``docs/method/goldnas.md`` §1.2):

* ``sep_conv_kxk``: (ReLU, depthwise kxk stride s, pointwise 1x1, BN), then the same with stride 1.
* ``dil_conv_kxk``: ReLU, depthwise kxk dilation 2 stride s, pointwise 1x1, BN.
* ``max_pool_3x3`` / ``avg_pool_3x3``: the pool (stride s, padding 1, avg without padded cells),
  followed in the *search* network by ``BatchNorm2d(affine=False)`` as DARTS does. Because a BN
  follows, they are ordinary modules there and not the fused ``node_sum`` pooling primitives
  (those apply only to a bare stride-1 pool).
* ``skip_connect``: stride 1 is :class:`IdentityBN`, the identity followed by ``BatchNorm2d(affine=False)``
  in search (``docs/method/goldnas.md`` §1.2: the BN equalizes scales so that the sigmoid gates are comparable).
  It is therefore a module whose output is materialized, **not** the fused
  :class:`goldnas_fast.nn.Identity`. Stride 2 is :class:`FactorizedReduce`.
* ``none``: :class:`Zero` (output zeros of the strided shape).

FLOPs are multiply-accumulates of convolutions only (BN, ReLU, pooling and sums count 0), from the real
layer shapes: a conv costs ``k_h k_w C_in C_out / groups * H_out W_out``.
"""
from __future__ import annotations

import torch
from torch import nn

from goldnas_fast.ops.pooling import PaddedAvgPool3x3

__all__ = [
    "OPS", "DEFAULT_OPS", "ReLUConvBN", "SepConv", "DilConv", "FactorizedReduce", "IdentityBN", "PoolBN",
    "Zero", "make_op", "op_flops", "op_params", "conv_out", "check_op_names",
]

OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                        "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
"""The DARTS operator names, in DARTS ``PRIMITIVES`` order."""

DEFAULT_OPS: tuple[str, ...] = ("skip_connect", "sep_conv_3x3")
"""GOLD-NAS's operator set (``docs/method/goldnas.md`` §1.2)."""

_SEP = {"sep_conv_3x3": 3, "sep_conv_5x5": 5}
_DIL = {"dil_conv_3x3": 3, "dil_conv_5x5": 5}


def check_op_names(ops: object, where: str = "ops") -> tuple[str, ...]:
    """Validates a non-empty sequence of distinct DARTS operator names and returns it as a tuple."""
    if isinstance(ops, str) or not hasattr(ops, "__iter__"):
        raise ValueError(f"{where} must be a sequence of operator names, got {ops!r}")
    names = tuple(ops)  # type: ignore[arg-type]
    if not names:
        raise ValueError(f"{where} must name at least one operator; available: {list(OPS)}")
    for name in names:
        if name not in OPS:
            raise ValueError(f"{where}: unknown operator {name!r}; expected names from {list(OPS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: operator names must be distinct, got {list(names)}")
    return names


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output side of a convolution or pooling: ``floor((size + 2p - d(k-1) - 1) / s) + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k, stride, padding, no bias) -> BN: DARTS's pre-processing block."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
                         nn.BatchNorm2d(C_out, affine=affine))


class DilConv(nn.Sequential):
    """ReLU -> depthwise kxk (dilation d, stride s) -> pointwise 1x1 -> BN."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 affine: bool = True) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                                   groups=C_in, bias=False),
                         nn.Conv2d(C_in, C_out, 1, bias=False),
                         nn.BatchNorm2d(C_out, affine=affine))


class SepConv(nn.Sequential):
    """Two stacked :class:`DilConv` blocks with dilation 1; only the first is strided (DARTS SepConv)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
                         DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine))


class FactorizedReduce(nn.Module):
    """ReLU, two 1x1 stride-2 convs (``C_out/2`` channels each) on grids offset by one pixel, concat, BN."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce: C_out must be even, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"FactorizedReduce needs even spatial sides, got {tuple(x.shape[-2:])}")
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class IdentityBN(nn.Module):
    """``skip_connect`` in search: the identity followed by ``BatchNorm2d(C, affine)`` (a real module)."""

    def __init__(self, C: int, affine: bool = False) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(C, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


class PoolBN(nn.Module):
    """3x3 max or average pooling (stride s, padding 1), optionally followed by BN (search: yes)."""

    def __init__(self, kind: str, C: int, stride: int, bn: bool, affine: bool = False) -> None:
        super().__init__()
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(3, stride=stride, padding=1)
        elif kind == "avg":
            self.pool = PaddedAvgPool3x3(stride)
        else:
            raise ValueError(f"PoolBN: kind must be 'max' or 'avg', got {kind!r}")
        self.bn = nn.BatchNorm2d(C, affine=affine) if bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pool(x))


class Zero(nn.Module):
    """``none``: zeros of the output shape (spatially subsampled by the stride)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return torch.zeros_like(x)
        return torch.zeros_like(x[:, :, ::self.stride, ::self.stride])


def make_op(name: str, C: int, stride: int, affine: bool, search: bool) -> nn.Module:
    """Builds operator ``name`` mapping ``C`` channels to ``C`` channels with ``stride`` (1 or 2).

    ``search=True`` gives the search-time modules (pools and stride-1 skip followed by BN); with
    ``search=False`` pools are bare and ``skip_connect`` (stride 1) is ``nn.Identity``, as in the DARTS
    re-training network (the GOLD-NAS re-training code keeps the skip BN; see :func:`build_network`).
    """
    if stride not in (1, 2):
        raise ValueError(f"make_op: stride must be 1 or 2, got {stride!r}")
    if name == "none":
        return Zero(stride)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return PoolBN(name[:3], C, stride, bn=search, affine=False)
    if name == "skip_connect":
        if stride == 2:
            return FactorizedReduce(C, C, affine)
        return IdentityBN(C, affine) if search else nn.Identity()
    if name in _SEP:
        k = _SEP[name]
        return SepConv(C, C, k, stride, k // 2, affine)
    if name in _DIL:
        k = _DIL[name]
        return DilConv(C, C, k, stride, k - 1, 2, affine)
    raise ValueError(f"make_op: unknown operator {name!r}; expected one of {list(OPS)}")


def op_flops(name: str, C: int, stride: int, H: int, W: int) -> int:
    r"""Multiply-accumulates of operator ``name`` (``C -> C`` channels, ``stride``) on an ``H x W`` input.

    With output side :math:`H_o W_o` (``ceil`` of the input over the stride):

    * ``sep_conv_kxk``: :math:`2 (k^2 C + C^2) H_o W_o`;
    * ``dil_conv_kxk``: :math:`(k^2 C + C^2) H_o W_o`;
    * ``skip_connect``: 0 at stride 1; :math:`2 \cdot C \cdot C/2 \cdot H_o W_o = C^2 H_o W_o` at stride 2
      (FactorizedReduce);
    * pools and ``none``: 0.
    """
    check_op_names((name,), "op_flops: name")
    if name in _SEP:
        k = _SEP[name]
        Ho, Wo = conv_out(H, k, stride, k // 2), conv_out(W, k, stride, k // 2)
        return 2 * (k * k * C + C * C) * Ho * Wo
    if name in _DIL:
        k = _DIL[name]
        Ho, Wo = conv_out(H, k, stride, k - 1, 2), conv_out(W, k, stride, k - 1, 2)
        return (k * k * C + C * C) * Ho * Wo
    if name == "skip_connect" and stride == 2:
        return C * C * conv_out(H, 1, 2, 0) * conv_out(W, 1, 2, 0)
    return 0


def op_params(name: str, C: int, stride: int, affine: bool, search: bool) -> int:
    """Parameter count of ``make_op(name, C, stride, affine, search)`` in closed form.

    A BN with ``affine=True`` has ``2C`` parameters; pools' and the search skip's BN are never affine
    in search (``affine`` applies to the skip BN as given).
    """
    check_op_names((name,), "op_params: name")
    bn = 2 * C if affine else 0
    if name in _SEP:
        k = _SEP[name]
        return 2 * (k * k * C + C * C + bn)
    if name in _DIL:
        k = _DIL[name]
        return k * k * C + C * C + bn
    if name == "skip_connect":
        if stride == 2:
            return C * C + bn
        return bn if search else 0
    return 0
