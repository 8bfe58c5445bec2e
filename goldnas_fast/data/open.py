"""Opening CIFAR-10 for a command: the one place where a loading failure becomes a :class:`UserError`."""
from __future__ import annotations

from pathlib import Path

from goldnas_fast.data.cifar import CifarArrays, load_cifar10
from goldnas_fast.errors import UserError

__all__ = ["open_cifar10", "EMBEDDED_SAMPLE"]

EMBEDDED_SAMPLE = "(embedded sample)"
"""How messages name ``path=None``, the small real sample shipped in the package."""


def open_cifar10(path: str | Path | None, *, max_train: int | None = None, max_test: int | None = None,
                 min_train: int = 0, flag: str = "--data") -> CifarArrays:
    """:func:`~goldnas_fast.data.cifar.load_cifar10` for a command line: ``path=None`` is the embedded
    sample, and every failure is one :class:`UserError` line that names ``flag`` and the path once.

    Args:
        path: as :func:`~goldnas_fast.data.cifar.load_cifar10`.
        max_train, max_test: as :func:`~goldnas_fast.data.cifar.load_cifar10`.
        min_train: refuse data with fewer training images than this.
        flag: the option the path came from.
    """
    shown = EMBEDDED_SAMPLE if path is None else str(path)
    try:
        data = load_cifar10(path, max_train=max_train, max_test=max_test)
    except (FileNotFoundError, ValueError, OSError, EOFError) as exc:
        text = str(exc)
        # the loader's messages usually name the file already (often its expanded form)
        named = path is not None and (shown in text or str(Path(path).expanduser()) in text)
        raise UserError(f"{flag}: {text}" if named else f"{flag} {shown}: {text}") from None
    if data.num_train < min_train:
        raise UserError(f"{flag} {shown}: needs at least {min_train} training images, found {data.num_train}")
    return data
