"""Multi-trial baselines over the NAS-Bench-201 table: random search and regularized evolution.

Both query the table instead of training, as the NAS-Bench-201 paper's multi-trial baselines do
(``docs/method/nasbench201.md`` §2.2; Dong & Yang, ICLR 2020, Sec. 5): the search signal is the 12-epoch
``cifar10-valid`` validation accuracy and the reported number the 200-epoch CIFAR-10 test accuracy.
The table holds no training times, so the budget is a number of architecture evaluations rather than
the paper's simulated 12,000 seconds. Each evaluation is one epoch of the search loop: it is logged like
a supernet epoch, and checkpointed every 100 evaluations (a resumed search repeats the evaluations
after its last checkpoint, which gives the same results).
"""
from __future__ import annotations

import collections
import dataclasses
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from goldnas_fast.errors import ConfigError
from goldnas_fast.nb201.arch import OPS, format_arch, parse_arch
from goldnas_fast.nb201.benchmark import Benchmark
from goldnas_fast.search.algorithm import Progress, SearchAlgorithm
from goldnas_fast.search.config import SearchConfig, option

if TYPE_CHECKING:
    from goldnas_fast.runs import RunDir
    from goldnas_fast.search.distributed import Context

__all__ = ["TrialHistory", "random_search", "regularized_evolution", "SIGNAL_METRIC", "REPORT_METRIC",
           "MultiTrialConfig", "EvolutionConfig", "RandomSearch", "RegularizedEvolution"]

SIGNAL_METRIC = "cifar10-valid-12"
REPORT_METRIC = "cifar10-test-200"
SIGNAL_KEY = "signal_cifar10_valid_acc_12"
POPULATION, SAMPLE_SIZE = 10, 3  # the NAS-Bench-201 settings of regularized evolution


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


@dataclasses.dataclass(frozen=True)
class MultiTrialConfig(SearchConfig):
    """``goldnas-fast search --algo random``: the number of architectures to evaluate."""

    algo = "random"
    spaces = ("nb201",)

    evaluations: int = option(100, "--evaluations")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.evaluations, bool) or not isinstance(self.evaluations, int) or self.evaluations < 1:
            raise ConfigError(type(self).__name__, "evaluations", "an int >= 1", self.evaluations)

    def space_note(self) -> str:
        return "queries the NAS-Bench-201 table"

    def record(self) -> dict[str, Any]:
        return {**super().record(), "evaluations": self.evaluations}


@dataclasses.dataclass(frozen=True)
class EvolutionConfig(MultiTrialConfig):
    """``goldnas-fast search --algo evolution``: at least one population of evaluations."""

    algo = "evolution"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.evaluations < POPULATION:
            raise ConfigError(type(self).__name__, "evaluations", f">= the evolution population ({POPULATION})",
                              self.evaluations)


class _TableSearch(SearchAlgorithm):
    """A search whose epoch evaluates one architecture by a table query (module docstring)."""

    limit_reason = "evaluations"
    checkpoint_every = 100  # a checkpoint holds every record so far: one per evaluation would cost O(n^2)

    def __init__(self, bench: Benchmark, evaluations: int, seed: int) -> None:
        self.bench, self.epochs, self.seed = bench, evaluations, seed
        self.history = TrialHistory()
        self._best = -float("inf")

    @classmethod
    def build(cls, config: MultiTrialConfig, ctx: Context) -> _TableSearch:
        return cls(Benchmark(), config.evaluations, config.seed)

    def _next(self, step: int) -> str:
        """The architecture of 0-based evaluation ``step``."""
        raise NotImplementedError

    def _signal(self, arch: str) -> float:
        return float(self.bench.get(arch, SIGNAL_METRIC))

    def run_epoch(self, epoch: int, progress: Progress | None = None) -> dict[str, Any]:
        """Evaluates one architecture; it is recorded when it beats every earlier one."""
        arch = self._next(epoch)
        signal = self._signal(arch)
        recorded = signal > self._best
        self._best = max(self._best, signal)
        self.history.add(arch, signal)
        return {"epoch": epoch + 1, "evaluation": epoch + 1, "arch": arch, SIGNAL_KEY: signal, "recorded": recorded,
                "stop": False, "stop_reason": None}

    def epoch_line(self, record: dict[str, Any]) -> str | None:
        if not record["recorded"]:
            return None
        return (f"evaluation {record['evaluation']} | new best {record['arch']} | cifar10-valid 12-epoch accuracy "
                f"{record[SIGNAL_KEY]:.2f}%")

    def state_dict(self) -> dict[str, Any]:
        return {"archs": list(self.history.archs), "signals": list(self.history.signals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = TrialHistory(list(state["archs"]), [float(s) for s in state["signals"]])
        self._best = max(self.history.signals, default=-float("inf"))

    def result(self, run_dir: RunDir, history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        """Every incumbent (an evaluation better than all before it) and the best architecture."""
        from goldnas_fast.search.results import finish_nb201_result

        recorded = [{"evaluation": r["evaluation"], "arch": r["arch"], SIGNAL_KEY: r[SIGNAL_KEY]}
                    for r in history if r["recorded"]]
        final_arch, _ = self.history.best
        return finish_nb201_result(run_dir, run_dir.config, final_arch, recorded, seconds,
                                   extra={"evaluated": len(self.history.archs), "signal_metric": SIGNAL_METRIC,
                                          "report_metric": REPORT_METRIC, "stop_reason": self.limit_reason})


class RandomSearch(_TableSearch):
    """Evaluates ``evaluations`` distinct uniformly drawn architectures (at most the whole table)."""

    config_type = MultiTrialConfig

    def __init__(self, bench: Benchmark, evaluations: int, seed: int) -> None:
        if evaluations < 1:
            raise ValueError(f"random_search: evaluations must be >= 1, got {evaluations}")
        super().__init__(bench, min(evaluations, len(bench)), seed)
        self._order = random.Random(seed).sample(range(len(bench)), self.epochs)

    def _next(self, step: int) -> str:
        return self.bench.query(self._order[step])["arch"]


def _mutate(arch: str, rng: random.Random) -> str:
    ops = list(parse_arch(arch))
    edge = rng.randrange(len(ops))
    ops[edge] = rng.choice([op for op in OPS if op != ops[edge]])
    return format_arch(ops)


class RegularizedEvolution(_TableSearch):
    """Regularized evolution (Real et al., AAAI 2019, Algorithm 1) with the NAS-Bench-201 settings
    (population 10, sample 3).

    The population is filled with random architectures; then each cycle mutates the best of
    ``sample_size`` random members (one edge gets another operator) and replaces the oldest member.
    """

    config_type = EvolutionConfig

    def __init__(self, bench: Benchmark, evaluations: int, seed: int, population: int = POPULATION,
                 sample_size: int = SAMPLE_SIZE) -> None:
        if evaluations < population:
            raise ValueError(f"regularized_evolution: evaluations ({evaluations}) must be >= population "
                             f"({population})")
        if not 1 <= sample_size <= population:
            raise ValueError(f"regularized_evolution: sample_size must be in 1..{population}, got {sample_size}")
        super().__init__(bench, evaluations, seed)
        self.population, self.sample_size = population, sample_size
        self._rng = random.Random(seed)
        self._initial = self._rng.sample(range(len(bench)), population)
        self._members: collections.deque[tuple[str, float]] = collections.deque()

    def _next(self, step: int) -> str:
        if step < self.population:
            return self.bench.query(self._initial[step])["arch"]
        parent = max(self._rng.sample(list(self._members), self.sample_size), key=lambda m: m[1])
        return _mutate(parent[0], self._rng)

    def run_epoch(self, epoch: int, progress: Progress | None = None) -> dict[str, Any]:
        record = super().run_epoch(epoch, progress)
        self._members.append((record["arch"], record[SIGNAL_KEY]))
        if len(self._members) > self.population:
            self._members.popleft()  # the oldest member dies
        return record

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self._rng.getstate(), "members": [list(m) for m in self._members]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._rng.setstate(state["rng"])
        self._members = collections.deque((str(a), float(s)) for a, s in state["members"])


def _run(search: _TableSearch) -> TrialHistory:
    for step in range(search.epochs):
        search.run_epoch(step)
    return search.history


def random_search(bench: Benchmark, evaluations: int, seed: int) -> TrialHistory:
    """Evaluates ``evaluations`` distinct uniformly drawn architectures."""
    return _run(RandomSearch(bench, evaluations, seed))


def regularized_evolution(bench: Benchmark, evaluations: int, seed: int, population: int = POPULATION,
                          sample_size: int = SAMPLE_SIZE) -> TrialHistory:
    """:class:`RegularizedEvolution` run to ``evaluations`` evaluations."""
    return _run(RegularizedEvolution(bench, evaluations, seed, population, sample_size))
