"""Output layouts of the fused ops, for their fake (meta) registrations: mirrors ``dense_same_layout``,
``node_layout`` and ``empty_node_like`` in ``csrc/layout.h``, so that compiled graphs see the strides the
kernels really produce (Inductor asserts them)."""
from __future__ import annotations

import torch


def output_like(tensors: list[torch.Tensor], pooling: bool) -> torch.Tensor:
    """An empty tensor laid out as the kernels lay out the result of ``tensors``.

    Pooling: channels_last when ``tensors[0]`` is channels_last- but not NCHW-contiguous, else NCHW, with
    canonical strides. Otherwise the inputs' shared dense layout when they all have one and it is not
    plain contiguous, else canonical contiguous strides."""
    first = tensors[0]
    if pooling:
        channels_last = first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return torch.empty(first.shape, dtype=first.dtype, device=first.device, memory_format=fmt)
    shared = all(t.stride() == first.stride() for t in tensors)
    if shared and _is_dense(first) and not first.is_contiguous():
        return torch.empty_strided(first.shape, first.stride(), dtype=first.dtype, device=first.device)
    return torch.empty(first.shape, dtype=first.dtype, device=first.device)


def _is_dense(t: torch.Tensor) -> bool:
    """Whether some permutation of ``t``'s dimensions is contiguous (at::Tensor::is_non_overlapping_and_dense)."""
    expected = 1
    for d in sorted(range(t.dim()), key=lambda d: (t.stride(d), t.shape[d])):
        if t.shape[d] != 1:
            if t.stride(d) != expected:
                return False
            expected *= t.shape[d]
    return True
