"""The GPU switches of the search side, tested on the CPU: the cells' layout choice on CUDA, --precision
for ``search``, CUDA-graph capture and re-capture in the GOLD-NAS and DARTS loops (behind the eager
stand-in), and the search's device-resident data."""
from __future__ import annotations

import pytest
import torch

from goldnas_fast.nn.cell import _preferred_layout, prefers_channels_last


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_auto_layout_is_channels_last_for_4d_float_cuda_tensors(dtype):
    assert prefers_channels_last("cuda", dtype, 4)


@pytest.mark.parametrize("device_type, dtype, dim", [
    ("cuda", torch.float64, 4),     # no fast NHWC path in cuDNN for double
    ("cuda", torch.float32, 3),     # not an image batch
    ("cpu", torch.float16, 4),      # oneDNN has no fast float16 NHWC convolutions
    ("cpu", torch.float64, 4),
    ("meta", torch.float32, 4),     # any other device keeps its layout
])
def test_auto_layout_keeps_the_layout_elsewhere(device_type, dtype, dim):
    assert not prefers_channels_last(device_type, dtype, dim)


def test_auto_layout_on_cpu_is_unchanged():
    x = torch.randn(2, 3, 4, 5)
    assert _preferred_layout(x).is_contiguous(memory_format=torch.channels_last)
    assert _preferred_layout(x.double()).is_contiguous()
    assert _preferred_layout(x.half()).is_contiguous()
    y = torch.randn(2, 3, 4)
    assert _preferred_layout(y) is y
