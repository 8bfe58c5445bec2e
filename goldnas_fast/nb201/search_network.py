"""Moved to :mod:`goldnas_fast.spaces.nb201.search_network` (import ``SearchNetwork`` from
:mod:`goldnas_fast.nb201` or :mod:`goldnas_fast.spaces.nb201`); this name stays for existing scripts."""
from goldnas_fast.spaces.nb201.search_network import GATES, SIGMOID_OPS, SOFTMAX_OPS, SearchNetwork

__all__ = ["SearchNetwork", "GATES", "SIGMOID_OPS", "SOFTMAX_OPS"]
