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
                ylabel: str = "accuracy (%)", *, final: int | None = None) -> Path:
    """Writes a PNG of accuracy vs FLOPs: the points (coloured by order, i.e. search progress), the front
    highlighted and joined as a staircase, the final architecture starred, and an optional background cloud.

    When a few architectures lie far below the rest (diverged ones near 10% would squash the band of
    interest), the main axes zoom on the band above Tukey's lower fence (``Q1 - 1.5 IQR`` of all accuracies,
    lowered to keep the final architecture in view), a side panel shows the full range, and a note says
    how many points lie below the band.

    Args:
        points: ``(N, 2)`` array-like of ``(accuracy, flops)``, e.g. the recorded architectures.
        front: indices into ``points`` to highlight; ``None`` computes :func:`pareto_front`.
        path: the PNG to write atomically (parent folders are created).
        title: the plot title.
        background: optional ``(accuracy, flops)`` arrays of e.g. every benchmark architecture, drawn as a
            light cloud with its own front as a dashed line.
        xlabel, ylabel: the axis labels; name the metric, e.g. "NAS-Bench-201 CIFAR-10 test accuracy
            (200 epochs, %)".
        final: index into ``points`` of the architecture the search returned, marked with a star.
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import io

    from goldnas_fast.runs import atomic_write_bytes

    fig = _pareto_figure(points, front, title, background, xlabel, ylabel, final)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


_ZOOM_MIN_POINTS = 8  # below this, an outlier rule means nothing: show the full range
_DISCRETE_COLOURS = 12  # up to this many records, one colour (and one colour-bar step) per record


def _zoom_floor(acc: np.ndarray, keep: float | None) -> float | None:
    """The lowest accuracy the main axes show, or None to show everything (see :func:`plot_pareto`)."""
    if acc.size < _ZOOM_MIN_POINTS:
        return None
    q1, q3 = np.percentile(acc, [25, 75])
    floor = q1 - 1.5 * (q3 - q1)
    if keep is not None:
        floor = min(floor, keep)
    return float(floor) if (acc < floor).any() else None


def _pareto_figure(points: Any, front: Sequence[int] | None, title: str, background: tuple[Any, Any] | None,
                   xlabel: str, ylabel: str, final: int | None) -> Any:
    """The :class:`~matplotlib.figure.Figure` that :func:`plot_pareto` writes (tests inspect it)."""
    # Figure + Agg canvas directly: no pyplot, so no global backend switch and no GUI.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    pts = _as_points(points, "plot_pareto")
    front = pareto_front(pts) if front is None else [int(i) for i in front]
    if any(not 0 <= i < len(pts) for i in front):
        raise ValueError(f"plot_pareto: front indices must be in [0, {len(pts)}), got {front}")
    if final is not None and not 0 <= final < len(pts):
        raise ValueError(f"plot_pareto: final must be an index in [0, {len(pts)}), got {final}")
    bg = np.empty((0, 2))
    if background is not None:
        bg_acc = np.asarray(background[0], dtype=np.float64).reshape(-1)
        bg_flops = np.asarray(background[1], dtype=np.float64).reshape(-1)
        if bg_acc.shape != bg_flops.shape:
            raise ValueError(f"plot_pareto: background accuracy and flops must have the same length, "
                             f"got {bg_acc.size} and {bg_flops.size}")
        ok = np.isfinite(bg_acc) & np.isfinite(bg_flops)
        bg = np.stack([bg_acc[ok], bg_flops[ok]], axis=1)
    floor = _zoom_floor(np.concatenate([pts[:, 0], bg[:, 0]]), None if final is None else pts[final, 0])

    if floor is None:
        fig = Figure(figsize=(8, 5.6), dpi=120, layout="constrained")
        ax, side, key = fig.add_subplot(1, 1, 1), None, None
    else:  # a side column: the full range on top, the legend and the note on what is left out below
        fig = Figure(figsize=(10, 5.6), dpi=120, layout="constrained")
        grid = fig.add_gridspec(2, 2, width_ratios=[3.2, 1], height_ratios=[1, 1.25])
        ax, side, key = fig.add_subplot(grid[:, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
        key.axis("off")
    FigureCanvasAgg(fig)
    axes = [ax] if side is None else [ax, side]
    n = len(pts)
    order = np.arange(1, n + 1)  # colour = record order, 1 = first
    if n <= _DISCRETE_COLOURS:  # one colour per record, so that the bar reads as whole numbers
        cmap = ListedColormap(colormaps["viridis"](np.linspace(0, 1, max(n, 1))))
        norm = BoundaryNorm(np.arange(0.5, n + 1.5), cmap.N)
    else:
        cmap, norm = colormaps["viridis"], Normalize(1, n)
    for a in axes:
        small = a is not ax
        if len(bg):
            a.scatter(bg[:, 1], bg[:, 0], s=1 if small else 3, c="0.8", alpha=0.5, linewidths=0,
                      label="all architectures", zorder=1, rasterized=True)
            bg_front = pareto_front(bg, duplicates="first")
            if bg_front:
                a.step(bg[bg_front, 1], bg[bg_front, 0], where="post", color="0.45", ls="--", lw=0.8 if small else 1,
                       label="benchmark front", zorder=2)
        if len(pts):
            sc = a.scatter(pts[:, 1], pts[:, 0], c=order, cmap=cmap, norm=norm, s=8 if small else 28, zorder=3,
                           label="recorded")
        if front and not small:
            f = sorted(front, key=lambda i: (pts[i, 1], -pts[i, 0]))
            a.step(pts[f, 1], pts[f, 0], where="post", color="tab:red", lw=1.5, zorder=4)
            a.scatter(pts[f, 1], pts[f, 0], s=90, facecolors="none", edgecolors="tab:red", linewidths=1.5,
                      label="Pareto front", zorder=5)
        if final is not None:
            # below the front's open rings, so that a final architecture on the front shows both
            a.scatter([pts[final, 1]], [pts[final, 0]], marker="*", s=60 if small else 200, c="gold",
                      edgecolors="black", linewidths=0.8, zorder=4.5, label="final architecture")
        a.grid(True, alpha=0.3)
    if final is not None:
        ax.annotate(f"final: {pts[final, 0]:.2f}%", (pts[final, 1], pts[final, 0]),
                    xytext=(10, -14), textcoords="offset points", fontsize=8, zorder=7)
    ax.margins(0.06)
    if n > 1:
        bar = fig.colorbar(sc, ax=ax, label="record order (1 = first)", pad=0.01, fraction=0.04)
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        if key is None:
            ax.legend(handles, labels, loc="best", fontsize=8)
        else:
            key.legend(handles, labels, loc="upper left", fontsize=8, frameon=False)
    if floor is not None:
        top = float(max(pts[:, 0].max(initial=-np.inf), bg[:, 0].max(initial=-np.inf)))
        pad = 0.04 * (top - floor)
        low = floor - pad
        ax.set_ylim(low, top + pad)
        side.axhspan(low, top + pad, color="tab:blue", alpha=0.1, zorder=0)
        side.set_title("full range (shaded: the main plot)", fontsize=8)
        side.tick_params(labelsize=7)
        counts = "\n".join(f"  {int((arr < low).sum()):,} of {len(arr):,} {what}"
                           for arr, what in ((pts[:, 0], "recorded"), (bg[:, 0], "benchmark")) if len(arr))
        key.text(0.0, 0.02, f"Below {low:.1f}%, so only in the\nfull-range plot:\n{counts}\narchitectures",
                 transform=key.transAxes, fontsize=8, va="bottom")
    return fig
