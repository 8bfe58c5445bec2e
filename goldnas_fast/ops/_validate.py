"""Python-side argument checks, raising ValueError naming the argument: the whole check of the plain-PyTorch
references, and the explanation of a fused op's failure in terms of its Python arguments (the fused ops'
kernels check their arguments themselves, in csrc/checks.h, so that the calls that succeed pay nothing here)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def check_tensor_list(op: str, name: str, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Checks that ``tensors`` is a non-empty list of floating tensors of one shape, dtype and device."""
    if isinstance(tensors, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a sequence of tensors, got a single tensor")
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: {name} must hold at least one tensor, got none")
    for k, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{op}: {name}[{k}] must be a torch.Tensor, got {type(t).__name__}")
    first = tensors[0]
    if not first.is_floating_point():
        raise ValueError(f"{op}: {name} must be floating-point tensors, got {first.dtype}")
    for k, t in enumerate(tensors[1:], start=1):
        if t.shape != first.shape:
            raise ValueError(f"{op}: {name}[{k}] has shape {tuple(t.shape)} but {name}[0] has {tuple(first.shape)}")
        if t.dtype != first.dtype:
            raise ValueError(f"{op}: {name}[{k}] has dtype {t.dtype} but {name}[0] has {first.dtype}")
        if t.device != first.device:
            raise ValueError(f"{op}: {name}[{k}] is on {t.device} but {name}[0] is on {first.device}")
    return tensors


def check_weights(op: str, weights: torch.Tensor, length: int | None, device: torch.device,
                  exact: bool = True) -> None:
    """Checks a 1-D floating gate vector on ``device`` with ``length`` entries (at least, if not exact)."""
    if not isinstance(weights, torch.Tensor):
        raise ValueError(f"{op}: weights must be a torch.Tensor, got {type(weights).__name__}")
    if weights.dim() != 1:
        raise ValueError(f"{op}: weights must be 1-D, got shape {tuple(weights.shape)}")
    if not weights.is_floating_point():
        raise ValueError(f"{op}: weights must be floating-point, got {weights.dtype}")
    if weights.device != device:
        raise ValueError(f"{op}: weights is on {weights.device} but the tensors are on {device}")
    if length is not None:
        if exact and weights.numel() != length:
            raise ValueError(f"{op}: weights has {weights.numel()} entries, expected {length} (one per input)")
        if not exact and weights.numel() < length:
            raise ValueError(f"{op}: weights has {weights.numel()} entries, expected at least {length}")


def value_error_of(check: Callable[[], object]) -> ValueError | None:
    """The ValueError that ``check()`` raises, or None when it passes."""
    try:
        check()
    except ValueError as exc:
        return exc
    return None
