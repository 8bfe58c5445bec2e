"""The search algorithms ``--algo`` can name: one line each, imported on first use."""
from __future__ import annotations

import importlib

from goldnas_fast.errors import UserError
from goldnas_fast.search.algorithm import SearchAlgorithm

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "get_algorithm"]

ALGORITHMS: dict[str, str] = {
    "goldnas": "goldnas_fast.search.onelevel:GoldNasSearch",
    "darts": "goldnas_fast.search.darts:DartsSearch",
    "random": "goldnas_fast.search.multitrial:RandomSearch",
    "evolution": "goldnas_fast.search.multitrial:RegularizedEvolution",
}
"""``--algo`` name -> ``module:class`` of its :class:`~goldnas_fast.search.algorithm.SearchAlgorithm`."""

DEFAULT_ALGORITHM = "goldnas"


def get_algorithm(name: str) -> type[SearchAlgorithm]:
    """The algorithm class registered as ``name``.

    Raises:
        UserError: no such algorithm.
    """
    if name not in ALGORITHMS:
        raise UserError(f"unknown --algo {name!r}; expected one of {', '.join(ALGORITHMS)}")
    module, _, cls = ALGORITHMS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
