"""A finished search's ``result.json``, Pareto front and ``pareto.png``, and the summary it prints."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from goldnas_fast.runs import RunDir

__all__ = ["finish_nb201_result", "finish_nb201_history", "finish_goldnas_result", "result_writer", "stop_reason"]

ACCURACY_KEY = "cifar10_test_acc_200"


def stop_reason(history: list[dict[str, Any]]) -> str:
    """Why a supernet search ended: the last record's reason (the controller's ``'one_op_per_edge'``,
    ``'flops_min'``, ``'exhausted'``, ...) or ``'epoch_limit'``."""
    reason = history[-1].get("stop_reason") if history else None
    return reason or "epoch_limit"


def _distinct(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each architecture once, at its first appearance; the final architecture's entry says ``final``."""
    first: dict[str, dict[str, Any]] = {}
    for c in candidates:
        if c["arch"] in first:
            first[c["arch"]].update({"final": True} if c.get("final") else {})
        else:
            first[c["arch"]] = dict(c)
    return list(first.values())


def _nb201_facts(arch: str) -> dict[str, Any]:
    from goldnas_fast.nb201.benchmark import Benchmark

    entry = Benchmark().query(arch)
    return {
        "arch": entry["arch"], "index": entry["index"], "flops_m": entry["flops_m"], "params_m": entry["params_m"],
        "cifar10_test_acc_200": entry["c10_test_acc_200"], "cifar10_valid_acc_200": entry["c10_valid_acc_200"],
        "cifar100_test_acc_200": entry["c100_test_acc_200_nats"],
        "imagenet16_test_acc_200": entry["in16_test_acc_200_nats"],
    }


def finish_nb201_result(run_dir: RunDir, cfg: dict[str, Any], final_arch: str, recorded: list[dict[str, Any]],
                        seconds: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Writes result.json and pareto.png of a NAS-Bench-201 search and prints the found architecture.

    Every recorded architecture and the final one carry their FLOPs and table accuracies (200-epoch,
    seed mean); the front is taken over the recorded and final architectures (CIFAR-10 test accuracy
    vs FLOPs).
    """
    from goldnas_fast.nb201.benchmark import Benchmark
    from goldnas_fast.search.pareto import pareto_front, plot_pareto

    recorded = [{**r, **_nb201_facts(r["arch"])} for r in recorded]
    final = _nb201_facts(final_arch)
    candidates = _distinct(recorded + [{**final, "final": True}])
    points = [(c[ACCURACY_KEY], c["flops_m"]) for c in candidates]
    front = sorted(set(pareto_front(points)))
    bench = Benchmark()
    result = {
        "space": cfg.get("space", "nb201"), "algo": cfg["algo"], "config": cfg, "final_arch": final_arch,
        "final": final, "recorded": recorded, "pareto": [candidates[i] for i in front], "search_seconds": seconds,
        "table_best_cifar10_test_acc_200": bench.best("cifar10-test-200")[1],
        **(extra or {}),
    }
    run_dir.write_result(result)
    plot_pareto(points, front, run_dir.path / "pareto.png",
                title=f"NAS-Bench-201 {cfg['algo']} search: recorded architectures",
                background=(bench.column("cifar10-test-200"), bench.column("flops_m")),
                ylabel="NAS-Bench-201 CIFAR-10 test accuracy (200 epochs, %)",
                final=next(i for i, c in enumerate(candidates) if c.get("final")))
    stop = f", stop: {result['stop_reason']}" if result.get("stop_reason") else ""
    print(f"table index {final['index']} | NAS-Bench-201 network FLOPs {final['flops_m']:.2f}M | "
          f"params {final['params_m']:.3f}M | "
          f"search {seconds:.0f}s{stop} | results in {run_dir.path}")
    # the headline last, on one line: what was found and how good the table says it is
    print(f"final architecture: {final_arch}  NAS-Bench-201 CIFAR-10 test accuracy: {final[ACCURACY_KEY]:.2f}% "
          "(200 epochs, seed mean)")
    return result


def finish_nb201_history(run_dir: RunDir, cfg: dict[str, Any], final_arch: str, history: list[dict[str, Any]],
                         seconds: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`finish_nb201_result` of a supernet search's epoch records (the recorded epochs' architectures)."""
    recorded = [{"epoch": r["epoch"], "arch": r["arch"]} for r in history if r.get("recorded")]
    return finish_nb201_result(run_dir, cfg, final_arch, recorded, seconds, extra=extra)


def finish_goldnas_result(run_dir: RunDir, cfg: dict[str, Any], final_arch: dict[str, Any],
                          history: list[dict[str, Any]], seconds: float,
                          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Writes result.json and pareto.png of a search in the GOLD-NAS space.

    No table exists for this space, so the accuracy of a recorded architecture is the supernet's
    training accuracy in the epoch it was recorded: a proxy, to be replaced by re-training
    (``goldnas-fast train --space goldnas --from-search DIR``).
    """
    from goldnas_fast.search.pareto import pareto_front, plot_pareto

    recorded = [{"epoch": r["epoch"], "genotype": r["arch"], "flops_m": r["flops_m"],
                 "supernet_train_accuracy": r["accuracy"]} for r in history if r.get("recorded")]
    last = history[-1] if history else {"epoch": 0, "flops_m": None, "accuracy": float("nan")}
    candidates = recorded + [{"epoch": last["epoch"], "genotype": final_arch, "flops_m": last["flops_m"],
                              "supernet_train_accuracy": last["accuracy"], "final": True}]
    points = [(c["supernet_train_accuracy"], c["flops_m"]) for c in candidates if c["flops_m"] is not None]
    front = sorted(set(pareto_front(points))) if points else []
    result = {
        "space": cfg.get("space", "goldnas"), "algo": cfg["algo"], "config": cfg, "final_genotype": final_arch,
        "final_flops_m": last["flops_m"], "recorded": recorded, "pareto": [candidates[i] for i in front],
        "accuracy_note": "supernet training accuracy at record time (proxy); re-train for real accuracy",
        "search_seconds": seconds, **(extra or {}),
    }
    run_dir.write_result(result)
    if points:
        plot_pareto(points, front, run_dir.path / "pareto.png", title="GOLD-NAS space: recorded architectures",
                    ylabel="supernet training accuracy when recorded (%, a proxy)", final=len(points) - 1)
    print(f"final genotype: {sum(len(c) for c in final_arch.get('cells', []))} operators, "
          f"FLOPs {last['flops_m']}M | search {seconds:.0f}s | results in {run_dir.path}")
    return result


def result_writer(ref: str) -> Callable[..., dict[str, Any]]:
    """The writer that a space's ``result_writer`` names (``module:function``)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
