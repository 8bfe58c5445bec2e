"""Multi-trial baselines over the NAS-Bench-201 table: random search and regularized evolution.

Both query the table instead of training, as the NAS-Bench-201 paper's multi-trial baselines do
(``nasbench201.md`` §2.2): the search signal is the 12-epoch ``cifar10-valid`` validation accuracy and
the reported number the 200-epoch CIFAR-10 test accuracy. The table holds no training times, so the
budget is a number of architecture evaluations rather than the paper's simulated 12,000 seconds.
"""
from __future__ import annotations

import collections
import random
from dataclasses import dataclass, field

from goldnas_fast.nb201.arch import OPS, format_arch, parse_arch
from goldnas_fast.nb201.benchmark import Benchmark

__all__ = ["TrialHistory", "random_search", "regularized_evolution", "SIGNAL_METRIC", "REPORT_METRIC"]

SIGNAL_METRIC = "cifar10-valid-12"
REPORT_METRIC = "cifar10-test-200"


@dataclass
class TrialHistory:
    """Every evaluated architecture in order, with the search signal, and the best one so far."""

    archs: list[str] = field(default_factory=list)
    signals: list[float] = field(default_factory=list)

    def add(self, arch: str, signal: float) -> None:
        self.archs.append(arch)
        self.signals.append(signal)

    @property
    def best(self) -> tuple[str, float]:
        i = max(range(len(self.signals)), key=self.signals.__getitem__)
        return self.archs[i], self.signals[i]


def _signal(bench: Benchmark, arch: str) -> float:
    return float(bench.get(arch, SIGNAL_METRIC))


def random_search(bench: Benchmark, evaluations: int, seed: int) -> TrialHistory:
    """Evaluates ``evaluations`` distinct uniformly drawn architectures."""
    if evaluations < 1:
        raise ValueError(f"random_search: evaluations must be >= 1, got {evaluations}")
    rng = random.Random(seed)
    history = TrialHistory()
    for index in rng.sample(range(len(bench)), min(evaluations, len(bench))):
        arch = bench.query(index)["arch"]
        history.add(arch, _signal(bench, arch))
    return history


def _mutate(arch: str, rng: random.Random) -> str:
    ops = list(parse_arch(arch))
    edge = rng.randrange(len(ops))
    ops[edge] = rng.choice([op for op in OPS if op != ops[edge]])
    return format_arch(ops)


def regularized_evolution(bench: Benchmark, evaluations: int, seed: int, population: int = 10,
                          sample_size: int = 3) -> TrialHistory:
    """Regularized evolution (Real et al. 2019) with the NAS-Bench-201 settings (population 10, sample 3).

    The population is filled with random architectures; then each cycle mutates the best of
    ``sample_size`` random members (one edge gets another operator) and replaces the oldest member.
    """
    if evaluations < population:
        raise ValueError(f"regularized_evolution: evaluations ({evaluations}) must be >= population ({population})")
    if not 1 <= sample_size <= population:
        raise ValueError(f"regularized_evolution: sample_size must be in 1..{population}, got {sample_size}")
    rng = random.Random(seed)
    history = TrialHistory()
    members: collections.deque[tuple[str, float]] = collections.deque()
    for index in rng.sample(range(len(bench)), population):
        arch = bench.query(index)["arch"]
        signal = _signal(bench, arch)
        members.append((arch, signal))
        history.add(arch, signal)
    while len(history.archs) < evaluations:
        parent = max(rng.sample(list(members), sample_size), key=lambda m: m[1])
        child = _mutate(parent[0], rng)
        signal = _signal(bench, child)
        members.append((child, signal))
        members.popleft()
        history.add(child, signal)
    return history
