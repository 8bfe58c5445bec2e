"""NAS-Bench-201 as a search space: the weight-sharing supernet and its search adapter.

The benchmark itself (arch strings, indices, costs, the table and the evaluation network
``build_network``) is :mod:`goldnas_fast.nb201`.
"""
from goldnas_fast.spaces.nb201.adapter import NB201Space
from goldnas_fast.spaces.nb201.search_network import GATES, SIGMOID_OPS, SOFTMAX_OPS, SearchNetwork

__all__ = ["SearchNetwork", "NB201Space", "GATES", "SIGMOID_OPS", "SOFTMAX_OPS"]
