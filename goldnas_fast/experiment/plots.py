"""Accuracy–FLOPs figures: the table's true front of all 15,625 architectures, and a search's recorded front.

FLOPs take only 28 distinct values in NB201 (they depend on the number of 1x1 and 3x3 conv edges), so the
true front is a short staircase.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["front_indices", "table_front", "plot_front"]

Y_MIN = 80.0


def front_indices(acc: np.ndarray, flops: np.ndarray) -> list[int]:
    """Indices of the points no other point dominates (higher-or-equal accuracy at lower-or-equal FLOPs,
    one strictly), sorted by FLOPs; of exact duplicates only the lowest index is kept."""
    from goldnas_fast.search.pareto import pareto_front

    acc, flops = np.asarray(acc, dtype=np.float64), np.asarray(flops, dtype=np.float64)
    if acc.shape != flops.shape or acc.ndim != 1:
        raise ValueError(f"acc and flops must be 1-D of one length, got {acc.shape} and {flops.shape}")
    ok = np.flatnonzero(np.isfinite(acc) & np.isfinite(flops))
    return [int(ok[i]) for i in pareto_front(np.stack([acc[ok], flops[ok]], axis=1), duplicates="first")]


def table_front(metric: str = "cifar10-test-200") -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(accuracy, flops, front)`` of every table architecture (index = position)."""
    from goldnas_fast.nb201.benchmark import Benchmark

    bench = Benchmark()
    acc, flops = bench.column(metric), bench.column("flops_m")
    return acc, flops, front_indices(acc, flops)


def plot_front(path: Path, recorded: Sequence[tuple[float, float]] = (), label: str = "", title: str = "") -> Path:
    """Writes a small PNG: every table architecture (grey), the table's front (black staircase) and, if
    given, ``recorded`` ``(flops, accuracy)`` points of a search with their own front (red)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    acc, flops, front = table_front()
    pts = np.asarray(recorded, dtype=np.float64).reshape(-1, 2)
    # the front lives above 85%; a full axis down to the 10% of broken cells would flatten it
    low = min([Y_MIN] + [float(a) - 2 for a in pts[:, 1]])
    hidden = int(np.sum(acc < low))
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(flops, acc, s=3, c="0.7", alpha=0.4, linewidths=0, rasterized=True,
               label=f"all {len(acc):,} architectures ({hidden:,} below {low:.0f}% not shown)")
    ax.step(flops[front], acc[front], where="post", color="black", lw=1.2, label="table front (true)")
    ax.scatter(flops[front], acc[front], s=12, c="black", zorder=3)
    if len(pts):
        ax.scatter(pts[:, 0], pts[:, 1], s=36, c="tab:red", marker="o", zorder=4, label=label or "recorded")
        own = front_indices(pts[:, 1], pts[:, 0])
        ax.step(pts[own, 0], pts[own, 1], where="post", color="tab:red", lw=1.2, zorder=4)
    ax.set_xlabel("FLOPs (M), official rule")
    ax.set_ylabel("CIFAR-10 test accuracy (%), 200 epochs")
    ax.set_ylim(low, 95.5)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
