"""The enlarged GOLD-NAS search space (``docs/method/goldnas.md`` §1): super-network, genotypes, re-training network.

* :class:`GoldNasSearchNetwork`: DARTS skeleton with independent cells and one sigmoid gate per
  (cell, edge, op); per-pair FLOPs/params, expected and discrete cost, pruning masks, fused or
  reference backend, lean mode.
* :class:`Genotype`: surviving (op, source, target) triples per cell, JSON round trip, validation.
* :func:`build_network`: the re-training network of a genotype (drop-path, auxiliary head);
  :func:`network_cost` its exact params and FLOPs.
"""
from goldnas_fast.spaces.goldnas.genotype import Genotype, reduction_cells
from goldnas_fast.spaces.goldnas.network import STYLES, Cost, GoldNasNetwork, build_network, network_cost
from goldnas_fast.spaces.goldnas.ops import DEFAULT_OPS, OPS, op_flops, op_params
from goldnas_fast.spaces.goldnas.search_network import CELL_EDGES, GoldNasSearchNetwork, count_architectures

__all__ = ["GoldNasSearchNetwork", "Genotype", "build_network", "network_cost", "GoldNasNetwork", "Cost", "STYLES",
           "OPS", "DEFAULT_OPS", "CELL_EDGES", "count_architectures", "op_flops", "op_params",
           "reduction_cells"]
