"""The accuracy–FLOPs Pareto front of recorded architectures, and its plot.

Points are ``(accuracy, flops)`` pairs: accuracy higher-better, FLOPs lower-better. Point ``p``
*dominates* ``q`` when ``acc_p >= acc_q`` and ``flops_p <= flops_q`` with at least one strict inequality.
The front is the set of points no other point dominates.

Ties, explicitly:

* equal FLOPs, different accuracy: only the most accurate can be on the front;
* equal accuracy, different FLOPs: only the cheapest can be on the front;
* exact duplicates (same accuracy and same FLOPs) do not dominate each other: with
  ``duplicates='all'`` (default) all of them are on the front, with ``duplicates='first'`` only the one
  with the lowest index.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["pareto_front", "dominates", "plot_pareto"]


def _as_points(points: Any, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name}: points must be a sequence of (accuracy, flops) pairs, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: points must be finite (NaN/inf at rows "
                         f"{np.flatnonzero(~np.isfinite(arr).all(axis=1))[:10].tolist()})")
    return arr


def dominates(p: Sequence[float], q: Sequence[float]) -> bool:
    """Whether ``p = (acc, flops)`` dominates ``q``."""
    return p[0] >= q[0] and p[1] <= q[1] and (p[0] > q[0] or p[1] < q[1])


def pareto_front(points: Any, duplicates: str = "all") -> list[int]:
    """Indices of the non-dominated points, sorted by FLOPs ascending (then by index).

    Args:
        points: ``(N, 2)`` array-like of ``(accuracy, flops)``.
        duplicates: ``'all'`` or ``'first'`` (module docstring).

    O(N log N): sweep by FLOPs ascending; a point is on the front iff it is the most accurate of its
    FLOPs group and strictly more accurate than every cheaper point.
    """
    if duplicates not in ("all", "first"):
        raise ValueError(f"pareto_front: duplicates must be 'all' or 'first', got {duplicates!r}")
    pts = _as_points(points, "pareto_front")
    n = len(pts)
    if n == 0:
        return []
    acc, flops = pts[:, 0], pts[:, 1]
    order = np.lexsort((np.arange(n), -acc, flops))  # flops asc, then acc desc, then index asc
    front: list[int] = []
    best = -np.inf  # best accuracy among strictly cheaper points
    i = 0
    while i < n:
        j = i
        while j < n and flops[order[j]] == flops[order[i]]:
            j += 1
        top = acc[order[i]]
        if top > best:
            group = [int(k) for k in order[i:j] if acc[k] == top]
            front.extend(group if duplicates == "all" else group[:1])
            best = top
        i = j
    return front


def plot_pareto(points: Any, front: Sequence[int] | None, path: str | Path, title: str = "",
                background: tuple[Any, Any] | None = None, xlabel: str = "FLOPs (M)",
                ylabel: str = "accuracy (%)") -> Path:
    """Writes a PNG of accuracy vs FLOPs: the points (coloured by order, i.e. search progress), the front
    highlighted and joined as a staircase, and an optional background cloud.

    Args:
        points: ``(N, 2)`` array-like of ``(accuracy, flops)``, e.g. the recorded architectures.
        front: indices into ``points`` to highlight; ``None`` computes :func:`pareto_front`.
        path: the PNG to write (parent folders are created).
        title: the plot title.
        background: optional ``(accuracy, flops)`` arrays of e.g. every benchmark architecture, drawn as a
            light cloud with its own front as a dashed line.
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    # Figure + Agg canvas directly: no pyplot, so no global backend switch and no GUI.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = _as_points(points, "plot_pareto")
    front = pareto_front(pts) if front is None else [int(i) for i in front]
    if any(not 0 <= i < len(pts) for i in front):
        raise ValueError(f"plot_pareto: front indices must be in [0, {len(pts)}), got {front}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=(7, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if background is not None:
        bg_acc = np.asarray(background[0], dtype=np.float64).reshape(-1)
        bg_flops = np.asarray(background[1], dtype=np.float64).reshape(-1)
        if bg_acc.shape != bg_flops.shape:
            raise ValueError(f"plot_pareto: background accuracy and flops must have the same length, "
                             f"got {bg_acc.size} and {bg_flops.size}")
        ok = np.isfinite(bg_acc) & np.isfinite(bg_flops)
        bg = np.stack([bg_acc[ok], bg_flops[ok]], axis=1)
        ax.scatter(bg[:, 1], bg[:, 0], s=3, c="0.8", alpha=0.5, linewidths=0, label="all architectures",
                   zorder=1)
        bg_front = pareto_front(bg, duplicates="first")
        if bg_front:
            ax.step(bg[bg_front, 1], bg[bg_front, 0], where="post", color="0.45", ls="--", lw=1,
                    label="benchmark front", zorder=2)
    if len(pts):
        sc = ax.scatter(pts[:, 1], pts[:, 0], c=np.arange(len(pts)), cmap="viridis", s=28, zorder=3,
                        label="recorded")
        if len(pts) > 1:
            fig.colorbar(sc, ax=ax, label="record order")
    if front:
        f = sorted(front, key=lambda i: (pts[i, 1], -pts[i, 0]))
        ax.step(pts[f, 1], pts[f, 0], where="post", color="tab:red", lw=1.5, zorder=4)
        ax.scatter(pts[f, 1], pts[f, 0], s=90, facecolors="none", edgecolors="tab:red", linewidths=1.5,
                   label="Pareto front", zorder=5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
