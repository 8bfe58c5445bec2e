"""Training protocols and the trainer: NAS-Bench-201 benchmark training and GOLD-NAS / DARTS re-training.

``protocols`` holds the documented hyper-parameters, ``trainer`` the epoch loop (device-resident data,
batched augmentation, per-epoch checkpoints, bit-exact resume), ``cli`` the ``goldnas-fast train`` command.
"""
from __future__ import annotations

from goldnas_fast.train.protocols import PROTOCOLS, Protocol, get_protocol

__all__ = ["PROTOCOLS", "Protocol", "get_protocol"]
