"""Search spaces, side by side: each ``spaces/<name>/`` holds its supernet (a
:class:`~goldnas_fast.nn.supernet.Supernet`) and its search adapter (a
:class:`~goldnas_fast.spaces.adapter.SearchSpace`); the GOLD-NAS space also its re-training network.

* :mod:`goldnas_fast.spaces.nb201`: NAS-Bench-201 (one shared cell, table look-ups).
* :mod:`goldnas_fast.spaces.goldnas`: the enlarged GOLD-NAS space (DARTS skeleton, independent cells,
  any number of inputs per node and of operators per edge).

A new space is a new folder plus one line in :data:`SPACES`; ``goldnas-fast search`` also needs its defaults
in :mod:`goldnas_fast.search.config` (``docs/architecture.md``, "Where to add").
"""
from __future__ import annotations

import importlib
from typing import Any

from goldnas_fast.spaces.adapter import SearchSpace

__all__ = ["SPACES", "SearchSpace", "make_space"]

SPACES: dict[str, str] = {
    "nb201": "goldnas_fast.spaces.nb201.adapter:NB201Space",
    "goldnas": "goldnas_fast.spaces.goldnas.adapter:GoldNasSpace",
}
"""Space name -> ``module:class`` of its :class:`SearchSpace` (imported on first use)."""


def make_space(name: str, **kwargs: Any) -> SearchSpace:
    """Builds the search space called ``name`` with the keyword arguments of its adapter."""
    if name not in SPACES:
        raise ValueError(f"unknown search space {name!r}; expected one of {tuple(SPACES)}")
    module, _, cls = SPACES[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
