"""NAS-Bench-201: cell encoding (``arch``), cost counting (``cost``), the evaluation network
(``network``, ``blocks``) and the offline benchmark table (``benchmark``).

``arch`` and ``cost`` are pure Python; ``Benchmark`` (numpy), ``build_network`` (torch) and the
weight-sharing supernet ``SearchNetwork`` (which lives with the search spaces, in
:mod:`goldnas_fast.spaces.nb201`) are imported on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from goldnas_fast.nb201.arch import (
    EDGES, NUM_ARCHS, OPS, all_archs, arch_to_index, format_arch, index_to_arch, parse_arch, unique_str,
)
from goldnas_fast.nb201.cost import Cost, cost, fixed_flops_m, op_flops_m

_LAZY = {"Benchmark": "goldnas_fast.nb201.benchmark", "build_network": "goldnas_fast.nb201.network",
         "TinyNetwork": "goldnas_fast.nb201.network", "SearchNetwork": "goldnas_fast.spaces.nb201.search_network"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OPS", "EDGES", "NUM_ARCHS", "parse_arch", "format_arch", "arch_to_index", "index_to_arch", "unique_str",
    "all_archs", "Cost", "cost", "op_flops_m", "fixed_flops_m", *_LAZY,
]
