"""The one reading of a ``--device`` option, shared by ``search``, ``train`` and distributed runs."""
from __future__ import annotations

import torch

from goldnas_fast.errors import UserError

__all__ = ["parse_device"]


def parse_device(name: str, flag: str = "--device") -> torch.device:
    """The device ``name`` names: ``cpu``, ``cuda`` (the current CUDA device) or ``cuda:i``.

    Args:
        name: what the user typed.
        flag: the option to name in error messages.

    Raises:
        UserError: not one of those forms, ``cuda`` without an available CUDA device, or ``cuda:i`` past
            the last device.
    """
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"{flag} must be cpu or cuda[:N], got {name!r}") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise UserError(f"{flag} must be cpu or cuda[:N], got {name!r}")
    if not torch.cuda.is_available():
        raise UserError(f"{flag} {name}: no CUDA device is available (this torch: {torch.__version__}); "
                        f"use {flag} cpu")
    if dev.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if dev.index >= torch.cuda.device_count():
        raise UserError(f"{flag} {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev
