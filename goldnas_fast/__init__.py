"""goldnas_fast: fused, pruning-aware supernet ops and the GOLD-NAS search for PyTorch.

Subpackages are imported lazily so that pure-Python parts (``nb201``, ``data``,
``search``) work even before the compiled extension is needed.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("ops", "nn", "nb201", "data", "search", "spaces", "train", "cli")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", *_SUBMODULES]
