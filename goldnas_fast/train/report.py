"""The end of a training run: ``result.json``, ``curves.png`` and the final printed line."""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import torch

from goldnas_fast.train.costs import count_flops_m, count_params_m

__all__ = ["finish", "build_result", "summary_line"]


def build_result(trainer: Any, target: Any, split_info: Mapping[str, Any], config: Mapping[str, Any],
                 wall_seconds: float) -> dict[str, Any]:
    """The ``result.json`` of a finished run (see :func:`finish`)."""
    from goldnas_fast.train.reference import compare_with_table

    history = trainer.history
    last = history[-1]
    final = dict(last["eval"])
    model = trainer.model
    result: dict[str, Any] = {
        "kind": "train",
        **target.record,
        "space": target.space,
        "protocol": trainer.protocol.to_dict(),
        "split": dict(split_info),
        "seed": config["seed"], "device": str(trainer.device), "amp": config["amp"],
        "channels_last": config["channels_last"],
        "cuda_graphs": trainer.options.cuda_graphs, "cudnn_benchmark": trainer.options.cudnn_benchmark,
        "epochs_done": trainer.epochs_done,
        "final": final,
        "final_acc": {name: m["acc"] for name, m in final.items()},
        "final_train": {"loss": last["train_loss"], "acc": last["train_acc"]},
        "params_m": count_params_m(model),
        "flops_m": count_flops_m(model, model),
        "cost_rule": "NB201 rule (docs/method/nasbench201.md §1.5): params / 1e6 and Conv2d+Linear "
                     "multiply-accumulates per 32x32 image / 1e6; auxiliary head excluded",
        "seconds": {"train": trainer.train_seconds, "eval": trainer.eval_seconds,
                    "total": trainer.train_seconds + trainer.eval_seconds, "this_invocation_wall": wall_seconds},
        "images_per_s": sum(r["train_seconds"] * r["images_per_s"] for r in history) / max(trainer.train_seconds,
                                                                                           1e-12),
        "torch": torch.__version__,
    }
    if target.space == "nb201":
        result["benchmark"] = compare_with_table(target.arch_index, trainer.protocol, split_info, final)
    return result


def summary_line(result: Mapping[str, Any]) -> str:
    """One line: final accuracies, the table's value and the difference (NB201), cost and time."""
    parts = [" ".join(f"{k} {v:.2f}%" for k, v in result["final_acc"].items())]
    for b in result.get("benchmark", []):
        flag = "" if b["comparable"] else " (not comparable: " + b["caveats"][0] + ")"
        parts.append(f"NB201 {b['column']} {b['table_acc']:.2f}%, diff {b['difference']:+.2f}{flag}")
    parts.append(f"{result['params_m']:.3f} M params, {result['flops_m']:.2f} MFLOPs, "
                 f"{result['seconds']['total']:.1f} s")
    return "result: " + " | ".join(parts)


def finish(trainer: Any, target: Any, split_info: Mapping[str, Any], config: Mapping[str, Any],
           wall_seconds: float) -> int:
    """Writes ``curves.png`` and, if every epoch is done, ``result.json``; prints the last line."""
    from goldnas_fast.text import plural
    from goldnas_fast.train.plots import plot_curves

    run, p = trainer.run, trainer.protocol
    if trainer.history:
        title = f"{target.label}, protocol {p.name} ({plural(p.epochs, 'epoch')}), split {split_info['name']}"
        plot_curves(trainer.history, run.path / "curves.png", title=title)
    if trainer.epochs_done < p.epochs:
        print(f"stopped after epoch {trainer.epochs_done}/{p.epochs}; continue with --resume", file=sys.stderr)
        return 0
    result = build_result(trainer, target, split_info, config, wall_seconds)
    run.write_result(result)
    print(summary_line(result))
    return 0
