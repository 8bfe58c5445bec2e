"""The one rule for a run directory that the command line does not name (``--out`` left out)."""
from __future__ import annotations

import datetime
from pathlib import Path

__all__ = ["default_out"]


def default_out(kind: str, *parts: object) -> Path:
    """``runs/KIND-PART-...-YYYYmmdd-HHMMSS`` below the working directory, e.g.
    ``runs/search-nb201-goldnas-s0-20260101-120000`` or ``runs/train-nb201-nb201-12-s0-20260101-120000``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "-".join([kind, *(str(p) for p in parts), stamp])
