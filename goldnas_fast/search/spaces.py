"""The search spaces as the search loop sees them: a supernet plus what pruning and reporting need.

A :class:`SearchSpace` wraps a supernet (NAS-Bench-201 or the GOLD-NAS space) and answers, per
(edge, operator) pair: the node it enters (gates are normalized per node), its edge, and its FLOPs; and,
for the whole network: the fixed FLOPs, the current discrete architecture, and its cost and (on
NAS-Bench-201) its table accuracies.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PairInfo", "SearchSpace", "NB201Space", "GoldNasSpace", "make_space", "SPACES"]

SPACES = ("nb201", "goldnas")


@dataclass(frozen=True)
class PairInfo:
    """Per-pair structure of a supernet, in the order of its flattened architecture parameters."""

    node: tuple[int, ...]  # global id of the node each pair enters
    edge: tuple[int, ...]  # global id of the edge each pair lies on
    flops_m: tuple[float, ...]  # FLOPs (M multiply-accumulates) each pair adds to the discrete network
    fixed_flops_m: float  # FLOPs of everything that is not searched (stem, reductions, head)


class SearchSpace:
    """Base class: a supernet with sigmoid (GOLD-NAS) or softmax (DARTS) gates."""

    name: str
    network: nn.Module
    aux_weight: float = 0.0

    def pair_info(self) -> PairInfo:
        raise NotImplementedError

    def architecture(self) -> Any:
        """The current discrete architecture (JSON-able)."""
        raise NotImplementedError

    def architecture_flops_m(self, arch: Any) -> float:
        raise NotImplementedError

    def describe(self, arch: Any) -> dict[str, Any]:
        """JSON-able facts about ``arch``: FLOPs, params and, where a table exists, its accuracies."""
        return {"flops_m": self.architecture_flops_m(arch)}

    def alpha(self) -> torch.Tensor:
        (alpha,) = self.network.arch_parameters()
        return alpha

    def set_alive(self, alive: Sequence[bool]) -> None:
        self.network.set_alive(list(alive))

    def loss(self, images: torch.Tensor, labels: torch.Tensor, module: nn.Module | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy (plus the weighted auxiliary loss where the network has a head) and logits.

        ``module`` is what to call instead of the bare network (e.g. its DistributedDataParallel wrapper).
        """
        out = (module or self.network)(images)
        if isinstance(out, tuple):
            logits, aux = out
            loss = F.cross_entropy(logits, labels)
            if aux is not None and self.aux_weight:
                loss = loss + self.aux_weight * F.cross_entropy(aux, labels)
            return loss, logits
        return F.cross_entropy(out, labels), out


class NB201Space(SearchSpace):
    """The NAS-Bench-201 supernet (one shared cell) with table look-ups of the found architectures."""

    name = "nb201"

    def __init__(self, gate: str = "sigmoid", C: int = 16, N: int = 5, num_classes: int = 10,
                 backend: str = "fused", lean: bool = False) -> None:
        from goldnas_fast.nb201.search_network import SearchNetwork

        self.network = SearchNetwork(C=C, N=N, num_classes=num_classes, gate=gate, backend=backend, lean=lean)
        self._bench = None

    @property
    def bench(self):
        if self._bench is None:
            from goldnas_fast.nb201.benchmark import Benchmark

            self._bench = Benchmark()
        return self._bench

    def pair_info(self) -> PairInfo:
        from goldnas_fast.nb201.arch import EDGES

        net = self.network
        nodes = tuple(EDGES[edge][0] for edge, _ in net.pairs)
        edges = tuple(edge for edge, _ in net.pairs)
        return PairInfo(nodes, edges, tuple(net.pair_flops_m()), float(net.fixed_flops_m()))

    def architecture(self) -> str:
        return self.network.arch_string()

    def architecture_flops_m(self, arch: str) -> float:
        from goldnas_fast.nb201.cost import cost

        return cost(arch).flops_m

    def describe(self, arch: str) -> dict[str, Any]:
        entry = self.bench.query(arch)
        return {
            "arch": arch,
            "index": entry["index"],
            "flops_m": entry["flops_m"],
            "params_m": entry["params_m"],
            "cifar10_test_acc_200": entry["c10_test_acc_200"],
            "cifar10_valid_acc_200": entry["c10_valid_acc_200"],
            "cifar100_test_acc_200": entry["c100_test_acc_200_nats"],
            "imagenet16_test_acc_200": entry["in16_test_acc_200_nats"],
        }


class GoldNasSpace(SearchSpace):
    """The enlarged GOLD-NAS space: independent cells, several operators per edge, sigmoid gates."""

    name = "goldnas"
    aux_weight = 0.4

    def __init__(self, C: int = 36, layers: int = 14, num_classes: int = 10, ops: Sequence[str] | None = None,
                 backend: str = "fused", lean: bool = False, auxiliary: bool = True) -> None:
        from goldnas_fast.spaces.goldnas.search_network import GoldNasSearchNetwork

        kwargs = {} if ops is None else {"ops": tuple(ops)}
        self.network = GoldNasSearchNetwork(C=C, layers=layers, num_classes=num_classes, auxiliary=auxiliary,
                                            backend=backend, lean=lean, **kwargs)
        self.aux_weight = 0.4 if auxiliary else 0.0

    def pair_info(self) -> PairInfo:
        net = self.network
        return PairInfo(tuple(net.pair_node()), tuple(net.pair_edge()), tuple(net.pair_flops_m()),
                        float(net.fixed_flops_m()))

    def architecture(self) -> dict[str, Any]:
        return self.network.genotype().to_json()

    def architecture_flops_m(self, arch: Any) -> float:
        return float(self.network.discrete_flops_m())


def make_space(name: str, **kwargs: Any) -> SearchSpace:
    """Builds the search space called ``name`` (``'nb201'`` or ``'goldnas'``)."""
    if name == "nb201":
        return NB201Space(**kwargs)
    if name == "goldnas":
        return GoldNasSpace(**kwargs)
    raise ValueError(f"unknown search space {name!r}; expected one of {SPACES}")
