"""The numeric mode of a run (``--precision`` of ``train`` and ``search``): one place for its meaning.

* ``fp32``: float32 everywhere, TF32 off (also for cuDNN convolutions, which PyTorch allows by default).
* ``tf32``: float32 tensors, TF32 matmuls and cuDNN convolutions on CUDA.
* ``bf16``: :func:`autocast` to bfloat16 around forward passes; the parameters (master weights, and
  the architecture gates of a search) stay float32 and so do their gradients and optimizer states.
  The fused ops take bfloat16 tensors.

:func:`precision` sets the global flags of a mode for a run (and ``cudnn.benchmark``, on CUDA only);
:func:`autocast` is the context of one forward pass.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from goldnas_fast.errors import UserError

__all__ = ["PRECISIONS", "autocast", "check_precision", "precision"]

PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(mode: str, option: str = "--precision") -> str:
    """``mode`` if it is one of :data:`PRECISIONS`.

    Raises:
        UserError: another value, naming ``option``.
    """
    if mode not in PRECISIONS:
        raise UserError(f"{option} must be one of {', '.join(PRECISIONS)}, got {mode!r}")
    return mode


@contextlib.contextmanager
def precision(mode: str, device: torch.device, cudnn_benchmark: bool = False,
              option: str = "--precision") -> Iterator[None]:
    """The global flags of ``mode`` on ``device`` (module docstring), and ``cudnn.benchmark`` on CUDA;
    restores them on exit. On the CPU it changes nothing.

    Raises:
        UserError: an unknown ``mode``, naming ``option``.
    """
    check_precision(mode, option)
    if device.type != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy TF32 flags warn on newer PyTorch but still work
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                 torch.backends.cudnn.benchmark)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark) = saved


def autocast(mode: str, device: torch.device, graphed: bool = False) -> contextlib.AbstractContextManager[Any]:
    """The context of one forward pass under ``mode``: bfloat16 autocast for ``bf16``, nothing otherwise.

    ``graphed``: the pass is captured in a CUDA graph, which must not hold autocast's cache of cast
    weights (PyTorch CUDA graphs docs), so the cache is off.
    """
    if check_precision(mode) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=not graphed)
    return contextlib.nullcontext()
