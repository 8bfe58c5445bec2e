"""The 25k training half of the NAS-Bench-201 CIFAR-10 split, written once as an ``.npz`` for GOLD-NAS.

``goldnas-fast search`` trains one-level searches on every image it loads, so the study hands GOLD-NAS a
file that holds exactly the NB201 ``train`` half (``goldnas_fast.data.split.nb201_cifar10_split``); the
other half stays unseen, as NB201's ``x-valid`` is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from goldnas_fast.errors import UserError

__all__ = ["FULL_TRAIN_SIZE", "check_full_training_set", "write_train_half"]

FULL_TRAIN_SIZE = 50000


def _load(data: Path):
    from goldnas_fast.data.cifar import load_cifar10

    try:
        return load_cifar10(data, max_test=0)
    except (FileNotFoundError, ValueError, OSError, EOFError) as exc:
        raise UserError(f"--data {data}: {exc}") from None


def check_full_training_set(data: Path):
    """Loads ``data``; raises :class:`UserError` unless it holds the 50,000 CIFAR-10 training images."""
    arrays = _load(data)
    if arrays.num_train != FULL_TRAIN_SIZE:
        raise UserError(f"--data {data}: the study needs the full CIFAR-10 training set ({FULL_TRAIN_SIZE} "
                        f"images, split 25k/25k as in NAS-Bench-201), found {arrays.num_train}; "
                        "use --demo or --tiny for a run on the embedded sample")
    return arrays


def write_train_half(data: Path, out_file: Path) -> Path:
    """Writes the NB201 ``train`` half of ``data`` to ``out_file`` (``images``, ``labels``), unless it exists.

    The write is atomic (temporary name, then rename), so an interrupted study never leaves half a file.
    """
    from goldnas_fast.data.split import nb201_cifar10_split

    if out_file.is_file():
        with np.load(out_file) as z:
            if z["labels"].shape == (FULL_TRAIN_SIZE // 2,):
                return out_file
    arrays = check_full_training_set(data)
    train_idx, _ = nb201_cifar10_split(FULL_TRAIN_SIZE)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.stem}.tmp.npz")
    np.savez(tmp, images=arrays.train_images[train_idx], labels=arrays.train_labels[train_idx])
    tmp.replace(out_file)
    return out_file
