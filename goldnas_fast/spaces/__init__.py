"""Search spaces, side by side: each ``spaces/<name>/`` holds its supernet (a
:class:`~goldnas_fast.nn.supernet.Supernet`) and its search adapter (a
:class:`~goldnas_fast.spaces.adapter.SearchSpace`); the GOLD-NAS space also its re-training network.

* :mod:`goldnas_fast.spaces.nb201`: NAS-Bench-201 (one shared cell, table look-ups).
* :mod:`goldnas_fast.spaces.goldnas`: the enlarged GOLD-NAS space (DARTS skeleton, independent cells,
  any number of inputs per node and of operators per edge).

A new space is a new folder with its adapter plus one line in :data:`SPACES`; the adapter carries what
``goldnas-fast search`` needs of it (``docs/architecture.md``, "Where to add").
"""
from __future__ import annotations

import importlib
from typing import Any

from goldnas_fast.spaces.adapter import SearchSpace

__all__ = ["SPACES", "SearchSpace", "make_space", "space_class"]

SPACES: dict[str, str] = {
    "nb201": "goldnas_fast.spaces.nb201.adapter:NB201Space",
    "goldnas": "goldnas_fast.spaces.goldnas.adapter:GoldNasSpace",
}
"""Space name -> ``module:class`` of its :class:`SearchSpace` (imported on first use)."""


def space_class(name: str) -> type[SearchSpace]:
    """The adapter class of the search space called ``name`` (its module imported on first use).

    Raises:
        ValueError: ``name`` is not in :data:`SPACES`.
    """
    if name not in SPACES:
        raise ValueError(f"unknown search space {name!r}; expected one of {tuple(SPACES)}")
    module, _, cls = SPACES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_space(name: str, **kwargs: Any) -> SearchSpace:
    """Builds the search space called ``name`` with the keyword arguments of its adapter."""
    return space_class(name)(**kwargs)
