"""3x3 average pooling (padding 1, ``count_include_pad=False``) that is safe from a PyTorch CUDA bug.

PyTorch's CUDA ``avg_pool2d`` backward for channels_last inputs with ``padding > 0`` returns wrong input
gradients (pytorch/pytorch#188344, fixed by PR #188345 in June 2026; torch 2.11 still has it): the NHWC
kernel maps each input pixel to the output windows without the padding offset. The forward and the NCHW
backward are right. Every reference operator of this package pools through :func:`avg_pool_3x3`, which
detects the bug once per device with a tiny probe and, where it is present, pools an NCHW copy instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch._prims_common import suggest_memory_format

__all__ = ["PaddedAvgPool3x3", "avg_pool_3x3", "nhwc_avg_pool_backward_is_wrong"]

# (device type, index) -> whether torch's NHWC avg_pool2d backward is wrong there.
_PROBED: dict[tuple[str, int | None], bool] = {}


def _probe(device: torch.device) -> bool:
    """Runs avg_pool2d forward+backward on a 1x2x4x4 float64 tensor in NCHW and in channels_last on
    ``device`` and tells whether the input gradients differ (they must be equal up to rounding)."""
    x = torch.arange(32, dtype=torch.float64, device=device).reshape(1, 2, 4, 4)
    g = torch.linspace(-1.0, 2.0, 32, dtype=torch.float64, device=device).reshape(1, 2, 4, 4)
    grads = []
    with torch.enable_grad():
        for fmt in (torch.contiguous_format, torch.channels_last):
            leaf = x.contiguous(memory_format=fmt).requires_grad_()
            out = F.avg_pool2d(leaf, 3, stride=1, padding=1, count_include_pad=False)
            grads.append(torch.autograd.grad(out, leaf, g.contiguous(memory_format=fmt))[0])
    return not torch.allclose(grads[0], grads[1], rtol=1e-12, atol=1e-12)


def nhwc_avg_pool_backward_is_wrong(device: torch.device) -> bool | None:
    """Whether torch's channels_last ``avg_pool2d`` backward is wrong on ``device`` (probed once per
    device and cached). CPU and other non-CUDA devices are not affected: False. None while the answer is
    unknown and cannot be probed now (inside ``torch.compile`` tracing or a CUDA graph capture)."""
    if device.type != "cuda":
        return False
    key = (device.type, device.index if device.index is not None else torch.cuda.current_device())
    known = _PROBED.get(key)
    if known is None:
        if torch.compiler.is_compiling() or torch.cuda.is_current_stream_capturing():
            return None
        known = _PROBED[key] = _probe(torch.device("cuda", key[1]))
    return known


def avg_pool_3x3(x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """``F.avg_pool2d(x, 3, stride, padding=1, count_include_pad=False)`` with correct gradients.

    Where torch's channels_last backward is wrong (or not known to be right) and torch would run it on ``x``
    (strides like channels_last, by torch's rule, which includes one-channel and 1x1-plane tensors that are
    NCHW-contiguous as well) and ``x`` will need a gradient, the pool runs on an NCHW copy of ``x`` and the
    result gets the channels_last layout that ``F.avg_pool2d`` gives. Otherwise it is ``F.avg_pool2d`` itself.

    Args:
        x: (N, C, H, W) or (C, H, W) tensor.
        stride: 1 (same size) or more (subsampling).
    """
    if (x.dim() == 4 and x.requires_grad and torch.is_grad_enabled()
            and suggest_memory_format(x) == torch.channels_last):
        if nhwc_avg_pool_backward_is_wrong(x.device) is not False:
            # clone, not contiguous(): a tensor that is NCHW-contiguous too would come back unchanged.
            nchw = x.clone(memory_format=torch.contiguous_format)
            out = F.avg_pool2d(nchw, 3, stride=stride, padding=1, count_include_pad=False)
            return out.clone(memory_format=torch.channels_last)
    return F.avg_pool2d(x, 3, stride=stride, padding=1, count_include_pad=False)


class PaddedAvgPool3x3(nn.AvgPool2d):
    """``nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)`` computed by :func:`avg_pool_3x3`."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_3x3(x, self.stride)
