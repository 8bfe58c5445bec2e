"""``curves.png``: training and evaluation loss and accuracy per epoch (matplotlib, Agg backend)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_curves"]

MARKERS_UP_TO = 25  # epochs; with more points, markers would hide the curve
TICK_EVERY_EPOCH_UP_TO = 12  # epochs; beyond, matplotlib picks (integer) ticks


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> None:
    """Draws loss (left) and top-1 accuracy (right) per epoch from the ``log.jsonl`` records.

    Each record needs ``epoch``, ``train_loss``, ``train_acc`` and ``eval`` (``{set: {loss, acc}}``).
    The file is written next to ``path`` and renamed, so a crash never leaves a half-written image.
    """
    import io

    from goldnas_fast.runs import atomic_write_bytes

    fig = _curves_figure(history, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(Path(path), buf.getvalue())


def _curves_figure(history: Sequence[Mapping[str, Any]], title: str) -> Any:
    """The :class:`~matplotlib.figure.Figure` that :func:`plot_curves` writes (tests inspect it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # Figure, not pyplot: no global state, safe in threads and tests
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise ValueError("plot_curves: history is empty; there is no epoch to draw")
    epochs = [int(r["epoch"]) for r in history]
    few = len(epochs) <= MARKERS_UP_TO
    train_style, eval_style = ("o-", "s--") if few else ("-", "--")
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], train_style, label="train")
    ax_acc.plot(epochs, [r["train_acc"] for r in history], train_style, label="train")
    sets = sorted({name for r in history for name in r.get("eval", {})})
    for name in sets:
        pts = [(r["epoch"], r["eval"][name]) for r in history if name in r.get("eval", {})]
        ax_loss.plot([e for e, _ in pts], [m["loss"] for _, m in pts], eval_style, label=name)
        ax_acc.plot([e for e, _ in pts], [m["acc"] for _, m in pts], eval_style, label=name)
    first, last = min(epochs), max(epochs)
    for ax, ylabel in ((ax_loss, "cross-entropy loss"), (ax_acc, "top-1 accuracy (%)")):
        ax.set_xlabel("epoch")
        if last - first < TICK_EVERY_EPOCH_UP_TO:
            ax.set_xticks(range(first, last + 1))
            ax.set_xlim(first - 0.5, last + 0.5)  # a lone epoch sits in the middle, not on an edge
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
