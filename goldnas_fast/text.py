"""Small helpers for the words that messages, titles and plots print."""
from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``count`` and the noun in the right number: ``plural(1, 'epoch') == '1 epoch'``, ``'2 epochs'``.

    Args:
        count: how many (an integer; ``-1`` and ``1`` take the singular).
        noun: the singular.
        plural_noun: the plural where it is not ``noun + 's'`` (e.g. ``'indices'``).
    """
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError(f"plural: count must be an int, got {count!r}")
    word = noun if abs(count) == 1 else (plural_noun or noun + "s")
    return f"{count:,} {word}"
