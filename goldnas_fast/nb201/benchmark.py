"""Offline NAS-Bench-201 table: every architecture's accuracies, params and FLOPs, no API download.

The data is the shared ``nb201_accuracies.csv`` (all 15,625 archs; provenance in its README),
embedded as ``goldnas_fast/resources/nb201_table.npz`` by ``_make_table.py``. Accuracies are top-1 %
and, at 200 epochs, the **mean over seeds** (the official API's ``is_random=False``).

Metric names (``Benchmark.get``, ``column``, ``best``) spell out dataset, split and schedule, to
avoid the official API's pitfalls (``hp='12'`` and one random seed by default; ``cifar10`` vs
``cifar10-valid``). ``<train set>-<eval split>-<epochs>``:

====================== =============================== ==================================================
metric                 table column                    meaning (official API terms)
====================== =============================== ==================================================
cifar10-test-200       c10_test_acc_200                ``cifar10`` / ``ori-test``: trained on all 50k, 10k
                                                       test set. **The "CIFAR-10 test" papers report.**
cifar10-valid-200      c10_valid_acc_200               ``cifar10-valid`` / ``x-valid``: trained on the 25k
                                                       train half, evaluated on the other 25k half
cifar10-valid-test-200 c10_trainsplit_test_acc_200     ``cifar10-valid`` / ``ori-test``: the 25k-trained
                                                       model on the 10k test set
cifar10-test-200-nats  c10_test_acc_200_nats           as cifar10-test-200 but from NATS-tss (other seeds)
cifar100-test-200      c100_test_acc_200_nats          ``cifar100`` / ``x-test`` (5k half of the test set)
imagenet16-test-200    in16_test_acc_200_nats          ``ImageNet16-120`` / ``x-test`` (3k half of val)
cifar10-valid-12       c10_valid_acc_12                the same splits after the 12-epoch schedule
cifar10-test-12        c10_test_acc_12                 (``hp='12'``; low fidelity, best CIFAR-10 test 89.16).
cifar100-valid-12      c100_valid_acc_12               ``cifar10-valid-12`` is the multi-trial baselines'
cifar100-test-12       c100_test_acc_12                search signal (``docs/method/nasbench201.md`` §2.2)
imagenet16-valid-12    in16_valid_acc_12
imagenet16-test-12     in16_test_acc_12
params_m               (counted)                       params (M), 10-class head, counted by ``cost``
params_m_table         params_m_c10                    the table's params; differs for 204 archs
flops_m                (counted)                       FLOPs (M), 10 classes, 32x32 (``cost``)
naswot                 naswot_v1_score                 NASWOT v1 score; NaN for 341 archs
====================== =============================== ==================================================

The raw table column names are accepted as metric names too. Not available offline: CIFAR-100 and
ImageNet16-120 validation accuracy at 200 epochs, per-seed values, curves, latency.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from goldnas_fast.nb201._table_format import FORMAT_VERSION, decode, payload_sha256
from goldnas_fast.nb201.arch import (
    NUM_ARCHS, ArchLike, all_archs, arch_to_index, index_codes, index_to_arch, unique_str,
)
from goldnas_fast.nb201.cost import cost

__all__ = ["Benchmark", "METRICS", "DEFAULT_PATH"]

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "resources" / "nb201_table.npz"

METRICS: dict[str, str] = {
    "cifar10-test-200": "c10_test_acc_200",
    "cifar10-valid-200": "c10_valid_acc_200",
    "cifar10-valid-test-200": "c10_trainsplit_test_acc_200",
    "cifar10-test-200-nats": "c10_test_acc_200_nats",
    "cifar100-test-200": "c100_test_acc_200_nats",
    "imagenet16-test-200": "in16_test_acc_200_nats",
    "cifar10-valid-12": "c10_valid_acc_12",
    "cifar10-test-12": "c10_test_acc_12",
    "cifar100-valid-12": "c100_valid_acc_12",
    "cifar100-test-12": "c100_test_acc_12",
    "imagenet16-valid-12": "in16_valid_acc_12",
    "imagenet16-test-12": "in16_test_acc_12",
    "params_m": "params_m",
    "params_m_table": "params_m_c10",
    "flops_m": "flops_m",
    "naswot": "naswot_v1_score",
}
"""Metric name -> column name (``params_m`` and ``flops_m`` are counted, not read from the table)."""


class Benchmark:
    """All 15,625 NAS-Bench-201 architectures with their table values.

    Architectures are given as an arch string, an official index, or 6 op names in edge order; an
    unknown one raises ValueError. Example::

        bench = Benchmark()
        bench.get("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
                  "skip_connect~2|", "cifar10-test-200")   # 54.296667 (arch 1835, DARTS collapse)
        bench.best("cifar10-test-200")                     # (6111, 94.373333)
    """

    def __init__(self, path: str | Path | None = None) -> None:
        start = time.perf_counter()
        path = Path(path) if path is not None else DEFAULT_PATH
        if not path.is_file():
            raise FileNotFoundError(f"NAS-Bench-201 table {path} not found; build it with "
                                    "`python -m goldnas_fast.nb201._make_table`")
        with np.load(path, allow_pickle=False) as z:
            version = int(z["format_version"])
            columns, narrow, wide, digest = z["columns"], z["narrow"], z["wide"], str(z["sha256"])
        if version != FORMAT_VERSION:
            raise RuntimeError(f"{path}: table format {version}, expected {FORMAT_VERSION}")
        if payload_sha256(columns, narrow, wide) != digest:
            raise RuntimeError(f"{path}: checksum mismatch, the embedded table is corrupt")
        values = np.concatenate([decode(narrow), decode(wide)])
        if values.shape[1] != NUM_ARCHS:
            raise RuntimeError(f"{path}: {values.shape[1]} architectures, expected {NUM_ARCHS}")
        self._columns: dict[str, np.ndarray] = {}
        for name, row in zip(columns.tolist(), values):
            row.setflags(write=False)
            self._columns[name] = row
        missing = {c for c in METRICS.values() if c not in ("params_m", "flops_m")} - self._columns.keys()
        if missing:
            raise RuntimeError(f"{path}: columns {sorted(missing)} missing")
        self._unique: list[str] | None = None
        self._classes: dict[str, list[int]] | None = None
        self.load_seconds = time.perf_counter() - start
        """Wall time the constructor took (reading, checksum, decoding)."""

    def __len__(self) -> int:
        return NUM_ARCHS

    def __repr__(self) -> str:
        return f"Benchmark({NUM_ARCHS} NAS-Bench-201 architectures, {len(self._columns)} table columns)"

    # -- architectures ---------------------------------------------------------------------------------
    @staticmethod
    def index(arch: ArchLike) -> int:
        """Official index of ``arch``."""
        return arch_to_index(arch)

    @staticmethod
    def arch(index: int) -> str:
        """Arch string of ``index``."""
        return index_to_arch(index)

    def unique_strs(self) -> list[str]:
        """The isomorphism key (NATS ``get_unique_str``) of every index, computed once."""
        if self._unique is None:
            self._unique = [unique_str(a) for a in all_archs()]
        return self._unique

    def isomorphic(self, arch: ArchLike) -> list[int]:
        """Sorted indices of every architecture with the same ``unique_str`` as ``arch`` (itself included)."""
        if self._classes is None:
            classes: dict[str, list[int]] = {}
            for i, key in enumerate(self.unique_strs()):
                classes.setdefault(key, []).append(i)
            self._classes = classes
        return list(self._classes[self.unique_strs()[arch_to_index(arch)]])

    # -- values ----------------------------------------------------------------------------------------
    @staticmethod
    def metrics() -> list[str]:
        """Valid metric names (see the module docstring for their meaning)."""
        return list(METRICS)

    def _column_name(self, metric: str) -> str:
        if metric in METRICS:
            return METRICS[metric]
        if isinstance(metric, str) and metric in self._columns:
            return metric
        table = [c for c in self._columns if c not in ("params_m", "flops_m")]
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)} "
                         f"(or a table column: {', '.join(table)})")

    def column(self, metric: str) -> np.ndarray:
        """Read-only float64 array of ``metric`` for all archs, position = index (fast baselines)."""
        name = self._column_name(metric)
        if name not in self._columns:  # params_m / flops_m: counted, computed on first use
            self._add_cost_columns()
        return self._columns[name]

    def _add_cost_columns(self) -> None:
        # Cost depends only on how many 1x1 and 3x3 conv edges a cell has: 28 distinct values.
        codes = np.array(index_codes())
        digits = (codes[:, None] // 5 ** np.arange(5, -1, -1)) % 5  # op ids, edge order
        n1 = (digits == 2).sum(1).tolist()  # nor_conv_1x1
        n3 = (digits == 3).sum(1).tolist()  # nor_conv_3x3
        table = {(a, b): cost(["nor_conv_1x1"] * a + ["nor_conv_3x3"] * b + ["none"] * (6 - a - b))
                 for a, b in set(zip(n1, n3))}
        for field in ("params_m", "flops_m"):
            col = np.array([getattr(table[a, b], field) for a, b in zip(n1, n3)])
            col.setflags(write=False)
            self._columns[field] = col

    def get(self, arch: ArchLike, metric: str) -> float:
        """Value of ``metric`` (e.g. ``'cifar10-test-200'``) for ``arch``."""
        name = self._column_name(metric)
        index = arch_to_index(arch)
        if name in ("params_m", "flops_m"):
            return getattr(cost(index), name)
        return float(self._columns[name][index])

    def query(self, arch: ArchLike) -> dict[str, object]:
        """Everything about ``arch``: ``index``, ``arch``, ``unique_str``, every table column (raw names,
        e.g. ``c10_test_acc_200``), ``params_m`` (counted), ``params_m_table`` and ``flops_m`` (10 classes,
        32x32; see :func:`goldnas_fast.nb201.cost.cost` for other datasets)."""
        index = arch_to_index(arch)
        entry: dict[str, object] = {"index": index, "arch": index_to_arch(index), "unique_str": unique_str(index)}
        entry.update({name: float(col[index]) for name, col in self._columns.items()
                      if name not in ("params_m", "flops_m")})
        counted = cost(index)
        entry["params_m"] = counted.params_m
        entry["params_m_table"] = entry["params_m_c10"]
        entry["flops_m"] = counted.flops_m
        return entry

    def best(self, metric: str, mode: str = "max") -> tuple[int, float]:
        """``(index, value)`` of the highest (``mode='max'``) or lowest (``'min'``) value of ``metric``;
        NaNs are ignored and ties go to the lowest index (CIFAR-10 test: 6111, not 13714)."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        col = self.column(metric)
        index = int(np.nanargmax(col) if mode == "max" else np.nanargmin(col))
        return index, float(col[index])
