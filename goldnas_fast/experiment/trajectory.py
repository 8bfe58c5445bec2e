"""Per-epoch trajectories of the supernet searches, read from their ``log.jsonl``, for the honest reading of
a result: where the architecture's table accuracy and FLOPs went, how fast GOLD-NAS pruned, and whether
DARTS drifted to ``skip_connect`` (its known collapse).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["read_log", "plot_trajectories"]


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch records of ``run_dir/log.jsonl`` (lines torn by an interruption are left out)."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and isinstance(r.get("epoch"), int) and isinstance(r.get("arch"), str):
            records.append(r)
    return records


def plot_trajectories(runs: Sequence[tuple[str, list[dict[str, Any]]]], path: Path) -> Path | None:
    """Writes a 2x2 PNG over epochs for every ``(name, log records)``: the table CIFAR-10 test accuracy and
    FLOPs of the epoch's architecture, GOLD-NAS's surviving (edge, op) pairs, and the number of
    ``skip_connect`` edges. Returns ``None`` (writes nothing) when no run has a record."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from goldnas_fast.nb201 import parse_arch
    from goldnas_fast.nb201.benchmark import Benchmark

    runs = [(name, recs) for name, recs in runs if recs]
    if not runs:
        return None
    bench = Benchmark()
    fig = Figure(figsize=(8, 5.2), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True)
    for k, (name, recs) in enumerate(runs):
        style = {"color": f"C{k % 10}", "lw": 1.2, "marker": "o", "ms": 2, "label": name}
        epochs = [r["epoch"] for r in recs]
        axes[0, 0].plot(epochs, [bench.get(r["arch"], "cifar10-test-200") for r in recs], **style)
        axes[0, 1].plot(epochs, [bench.get(r["arch"], "flops_m") for r in recs], **style)
        if all("surviving" in r for r in recs):
            axes[1, 0].plot(epochs, [r["surviving"] for r in recs], **style)
        axes[1, 1].plot(epochs, [list(parse_arch(r["arch"])).count("skip_connect") for r in recs], **style)
    for ax, title in zip(axes.flat, ("table CIFAR-10 test (%) of the epoch's architecture",
                                     "its FLOPs (M)", "GOLD-NAS: surviving (edge, op) pairs",
                                     "skip_connect edges (of 6)")):
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[1]:
        ax.set_xlabel("epoch", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
