"""``curves.png``: training and evaluation loss and accuracy per epoch (matplotlib, Agg backend)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_curves"]


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> None:
    """Draws loss (left) and top-1 accuracy (right) per epoch from the ``log.jsonl`` records.

    Each record needs ``epoch``, ``train_loss``, ``train_acc`` and ``eval`` (``{set: {loss, acc}}``).
    The file is written next to ``path`` and renamed, so a crash never leaves a half-written image.
    """
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.ticker import MaxNLocator
    from matplotlib.figure import Figure  # Figure, not pyplot: no global state, safe in threads and tests

    from goldnas_fast.runs import atomic_write_bytes

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax_acc.plot(epochs, [r["train_acc"] for r in history], "o-", label="train")
    sets = sorted({name for r in history for name in r.get("eval", {})})
    for name in sets:
        pts = [(r["epoch"], r["eval"][name]) for r in history if name in r.get("eval", {})]
        ax_loss.plot([e for e, _ in pts], [m["loss"] for _, m in pts], "s--", label=name)
        ax_acc.plot([e for e, _ in pts], [m["acc"] for _, m in pts], "s--", label=name)
    for ax, ylabel in ((ax_loss, "cross-entropy loss"), (ax_acc, "top-1 accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(Path(path), buf.getvalue())
