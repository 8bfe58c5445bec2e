"""The NAS-Bench-201 table's value for the protocol and split a run used, and the difference.

=============  =================  ========  ==========================  ===============================
protocol       split              eval set  metric                      table column
=============  =================  ========  ==========================  ===============================
``nb201-12``   ``cifar10-valid``  x-valid   ``cifar10-valid-12``        ``c10_valid_acc_12``
``nb201-12``   ``cifar10``        ori-test  ``cifar10-test-12``         ``c10_test_acc_12``
``nb201-200``  ``cifar10-valid``  x-valid   ``cifar10-valid-200``       ``c10_valid_acc_200``
``nb201-200``  ``cifar10-valid``  ori-test  ``cifar10-valid-test-200``  ``c10_trainsplit_test_acc_200``
``nb201-200``  ``cifar10``        ori-test  ``cifar10-test-200``        ``c10_test_acc_200``
=============  =================  ========  ==========================  ===============================

(The table has no 12-epoch ``cifar10-valid`` / ``ori-test`` column.) A comparison is marked
``comparable`` only when the protocol was not overridden and the run trained on the benchmark's
full training set; every other difference (fewer test images, one seed against a seed mean) is
listed in ``caveats``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from goldnas_fast.train.protocols import Protocol

__all__ = ["TABLE_METRICS", "compare_with_table"]

TABLE_METRICS: dict[tuple[str, str, str], str] = {
    ("nb201-12", "cifar10-valid", "x-valid"): "cifar10-valid-12",
    ("nb201-12", "cifar10", "ori-test"): "cifar10-test-12",
    ("nb201-200", "cifar10-valid", "x-valid"): "cifar10-valid-200",
    ("nb201-200", "cifar10-valid", "ori-test"): "cifar10-valid-test-200",
    ("nb201-200", "cifar10", "ori-test"): "cifar10-test-200",
}
_FULL_TRAIN = {"cifar10-valid": 25000, "cifar10": 50000}
_FULL_EVAL = {"x-valid": 25000, "ori-test": 10000}


def compare_with_table(arch_index: int, protocol: Protocol, split: Mapping[str, Any],
                       final: Mapping[str, Mapping[str, float]], benchmark: Any = None) -> list[dict[str, Any]]:
    """One entry per evaluation set that has a table column for ``(protocol, split)``.

    Each entry: ``eval_set``, ``metric``, ``column``, ``table_acc``, ``measured_acc``, ``difference``
    (measured minus table, percentage points), ``comparable`` and ``caveats``.
    """
    if benchmark is None:
        from goldnas_fast.nb201.benchmark import Benchmark

        benchmark = Benchmark()
    from goldnas_fast.nb201.benchmark import METRICS

    base = protocol.name
    out = []
    for eval_set, measured in final.items():
        metric = TABLE_METRICS.get((base, split["name"], eval_set))
        if metric is None:
            continue
        table = benchmark.get(arch_index, metric)
        caveats = []
        if protocol.overridden:
            caveats.append(f"protocol overridden ({', '.join(protocol.overridden)}): not the benchmark's training")
        if split.get("train_images") != _FULL_TRAIN[split["name"]]:
            caveats.append(f"trained on {split.get('train_images')} images, the benchmark on "
                           f"{_FULL_TRAIN[split['name']]}")
        n_eval = int(measured.get("images", 0))
        if n_eval != _FULL_EVAL[eval_set]:
            caveats.append(f"{eval_set} measured on {n_eval} images, the table on {_FULL_EVAL[eval_set]}")
        seeds = ("seeds 111/777 (cifar10-valid) or 111 (cifar10)" if base == "nb201-12"
                 else "the mean over seeds 777/888/999")
        caveats.append(f"the table holds the benchmark's {seeds}; this is one run with its own seed")
        comparable = not protocol.overridden and split.get("train_images") == _FULL_TRAIN[split["name"]]
        out.append({"eval_set": eval_set, "metric": metric, "column": METRICS[metric], "table_acc": table,
                    "measured_acc": float(measured["acc"]), "difference": float(measured["acc"]) - table,
                    "comparable": comparable, "caveats": caveats})
    return out
