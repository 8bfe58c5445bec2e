"""The one progress-bar rule of the command lines: a bar only where a person watches it.

On a terminal, a tqdm bar on stderr redraws in place. Where stderr is a file or a pipe (a batch job's
log, a CI run), redrawing writes a ``\\r`` line fragment per update; there the bar is off, and the
commands' one line per epoch is the progress record.
"""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

__all__ = ["progress_bar", "interactive"]


def interactive() -> bool:
    """Whether stderr is a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled (all calls are no-ops) unless ``enabled`` and stderr is a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not (enabled and interactive()),
                **kwargs)
