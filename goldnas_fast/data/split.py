"""Seeded index splits, including the NAS-Bench-201 25k/25k split of the CIFAR-10 training set.

NB201's ``configs/nas-benchmark/cifar-split.txt`` (``docs/method/nasbench201.md`` §1.7) is reproduced from
its seed with Python's own Mersenne Twister::

    idx = list(range(50000)); random.seed(1021); random.shuffle(idx)
    train = sorted(idx[:25000])   # 0, 5, 7, 11, 13, ...
    valid = sorted(idx[25000:])   # 1, 2, 3, 4, 6, ...

``random.shuffle`` has used the same algorithm (Fisher-Yates driven by ``_randbelow``) since
Python 3.2, so the result does not depend on the Python version in use. The split indexes the
training set in official order, which is the order every format of
:func:`~goldnas_fast.data.cifar.load_cifar10` keeps. ``cifar10-valid`` trains on ``train`` and
reports ``x-valid`` on ``valid``.
"""
from __future__ import annotations

import random

import numpy as np

__all__ = ["NB201_SPLIT_SEED", "NB201_TRAIN_SIZE", "nb201_cifar10_split", "seeded_split"]

NB201_SPLIT_SEED = 1021
NB201_TRAIN_SIZE = 50000


def seeded_split(n: int, first: int | None = None, seed: int = NB201_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``range(n)`` into two disjoint sorted parts by one seeded shuffle.

    ``idx = list(range(n)); random.Random(seed).shuffle(idx)``; returns
    ``(sorted(idx[:first]), sorted(idx[first:]))`` as int64 arrays. ``first`` defaults to ``n // 2``
    (a half/half split, e.g. of the embedded sample). With ``n = 50000, first = 25000, seed = 1021``
    this is exactly the NB201 split.

    Raises:
        ValueError: ``n < 0`` or ``first`` outside ``0..n``.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    first = n // 2 if first is None else first
    if not isinstance(first, (int, np.integer)) or not 0 <= first <= n:
        raise ValueError(f"first must be an int in 0..{n}, got {first!r}")
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    return np.sort(np.asarray(idx[:first], dtype=np.int64)), np.sort(np.asarray(idx[first:], dtype=np.int64))


def nb201_cifar10_split(n_available: int = NB201_TRAIN_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The NAS-Bench-201 ``cifar10-valid`` split: ``(train_idx, valid_idx)``, 25,000 sorted int64 each.

    Args:
        n_available: when only the first ``n_available`` training images are loaded (e.g. two of the
            five shards on a machine with little transfer room), keep only the indices below it, so
            both halves stay subsets of the official halves (about ``n_available / 2`` each).

    Raises:
        ValueError: ``n_available`` outside ``0..50000``.
    """
    if not isinstance(n_available, (int, np.integer)) or not 0 <= n_available <= NB201_TRAIN_SIZE:
        raise ValueError(f"n_available must be an int in 0..{NB201_TRAIN_SIZE}, got {n_available!r}")
    train, valid = seeded_split(NB201_TRAIN_SIZE, NB201_TRAIN_SIZE // 2, NB201_SPLIT_SEED)
    if n_available < NB201_TRAIN_SIZE:
        train, valid = train[train < n_available], valid[valid < n_available]
    return train, valid
