"""NAS-Bench-201 as a search space: the supernet with table look-ups of the found architectures."""
from __future__ import annotations

from typing import Any, ClassVar

from goldnas_fast.spaces.adapter import SearchSpace
from goldnas_fast.spaces.nb201.search_network import SearchNetwork

__all__ = ["NB201Space", "SAMPLE_N"]

SAMPLE_N = 2  # 8 cells instead of 17 on the embedded sample: its demo must finish in minutes on a CPU


class NB201Space(SearchSpace):
    """The NAS-Bench-201 supernet (one shared cell topology); architectures are arch strings.

    Args:
        gate: ``'sigmoid'`` (GOLD-NAS) or ``'softmax'`` (DARTS).
        C, N, num_classes, backend, lean: as :class:`~goldnas_fast.spaces.nb201.search_network.SearchNetwork`.
    """

    name = "nb201"
    # NAS-Bench-201's search setting (docs/method/nasbench201.md §2.2)
    supernet_defaults: ClassVar[dict[str, Any]] = {"C": 16, "N": 5, "batch_size": 64}
    sigmoid_gate = "sigmoid"
    stop_one_op_per_edge = True  # docs/method/goldnas.md §9
    result_writer = "goldnas_fast.search.results:finish_nb201_history"

    def __init__(self, gate: str = "sigmoid", C: int = 16, N: int = 5, num_classes: int = 10,
                 backend: str = "fused", lean: bool = False) -> None:
        self.network = SearchNetwork(C=C, N=N, num_classes=num_classes, gate=gate, backend=backend, lean=lean)
        self._bench = None

    @classmethod
    def search_defaults(cls, sample: bool) -> dict[str, Any]:
        out = super().search_defaults(sample)
        if sample:
            out["N"] = SAMPLE_N
        return out

    @classmethod
    def space_kwargs(cls, config: Any) -> dict[str, Any]:
        return {**super().space_kwargs(config), "N": config.N}

    @classmethod
    def record(cls, config: Any) -> dict[str, Any]:
        return {"N": config.N}

    @property
    def bench(self):
        """The NAS-Bench-201 table (loaded on first use)."""
        if self._bench is None:
            from goldnas_fast.nb201.benchmark import Benchmark

            self._bench = Benchmark()
        return self._bench

    def architecture(self) -> str:
        return self.network.arch_string()

    def architecture_flops_m(self, arch: str) -> float:
        from goldnas_fast.nb201.cost import cost

        return cost(arch).flops_m

    def describe(self, arch: str) -> dict[str, Any]:
        """The table's facts about ``arch``: index, FLOPs, params and 200-epoch accuracies (seed mean)."""
        entry = self.bench.query(arch)
        return {
            "arch": entry["arch"], "index": entry["index"], "flops_m": entry["flops_m"], "params_m": entry["params_m"],
            "cifar10_test_acc_200": entry["c10_test_acc_200"], "cifar10_valid_acc_200": entry["c10_valid_acc_200"],
            "cifar100_test_acc_200": entry["c100_test_acc_200_nats"],
            "imagenet16_test_acc_200": entry["in16_test_acc_200_nats"],
        }
