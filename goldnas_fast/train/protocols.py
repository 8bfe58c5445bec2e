"""Training protocols: the NAS-Bench-201 benchmark training and the GOLD-NAS / DARTS re-training.

A :class:`Protocol` holds every hyper-parameter a run needs; ``PROTOCOLS`` has the documented ones
(``docs/method/nasbench201.md`` §2.1, ``docs/method/goldnas.md`` §6). Short runs override epochs, batch size or
learning rate with :meth:`Protocol.with_overrides`; the run then records the protocol it actually
used (:meth:`Protocol.to_dict`), including which fields were overridden.

Learning rate, per epoch ``e = 0 .. T-1`` (stepped once per epoch, no warm-up)::

    lr(e) = lr_min + (lr - lr_min) * (1 + cos(pi * e / T)) / 2

so the last epoch runs at ``lr * (1 + cos(pi * (T-1) / T)) / 2``, not at 0 (NB201's custom
``CosineAnnealingLR`` evaluates the cosine at the integer epoch). The DARTS-family code calls
``scheduler.step()`` at the start of each epoch; under the PyTorch of its time (<= 1.0, which its
``Variable``/``volatile``/``cuda(async=True)`` calls require) that also gives ``lr(e)`` for epoch ``e``.
Drop-path probability for epoch ``e`` (DARTS): ``p * e / T``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import torch

from goldnas_fast.data.augment import (DARTS_CIFAR10_MEAN, DARTS_CIFAR10_STD, NB201_CIFAR10_MEAN,
                                       NB201_CIFAR10_STD)
from goldnas_fast.errors import UserError

__all__ = ["Protocol", "PROTOCOLS", "get_protocol"]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One training protocol. Every field is recorded in the run's ``config.json`` and ``result.json``.

    Attributes:
        name: ``'nb201-12'``, ``'nb201-200'`` or ``'darts'``.
        space: the search space the protocol trains (``'nb201'`` or ``'goldnas'``).
        epochs: T, the number of epochs.
        batch_size: training batch size.
        lr: initial learning rate; ``lr_min``: the cosine's floor (``eta_min``).
        momentum, nesterov, weight_decay: the SGD settings (weight decay on every parameter).
        crop_padding: zero padding of the random 32x32 crop (0: no crop); ``flip``: random horizontal flip.
        cutout: side of the Cutout square, applied after normalization (0: none).
        mean, std: per-channel normalization of images in [0, 1].
        aux_weight: weight of the auxiliary head's loss (0: no auxiliary head).
        drop_path: final drop-path probability, ramped linearly from 0 (0: none).
        grad_clip: max global gradient norm (None: no clipping).
        init_channels: C of the network (16 for NB201, 36 for DARTS).
        default_split: the data split used when the command line names none.
        overridden: names of the fields changed from the documented protocol.
    """

    name: str
    space: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    crop_padding: int
    flip: bool
    cutout: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    aux_weight: float
    drop_path: float
    grad_clip: float | None
    init_channels: int
    default_split: str
    lr_min: float = 0.0
    schedule: str = "cosine, stepped per epoch, no warm-up"
    overridden: tuple[str, ...] = ()

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based): ``lr_min + (lr - lr_min)(1 + cos(pi e / T)) / 2``."""
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"epoch must be in [0, {self.epochs}), got {epoch}")
        return self.lr_min + (self.lr - self.lr_min) * (1 + math.cos(math.pi * epoch / self.epochs)) / 2

    def drop_path_at(self, epoch: int) -> float:
        """Drop-path probability of epoch ``epoch``: ``drop_path * e / T`` (DARTS' linear ramp)."""
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"epoch must be in [0, {self.epochs}), got {epoch}")
        return self.drop_path * epoch / self.epochs

    def make_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.SGD:
        """The protocol's SGD optimizer, at the learning rate of epoch 0."""
        return torch.optim.SGD(params, lr=self.lr_at(0), momentum=self.momentum, nesterov=self.nesterov,
                               weight_decay=self.weight_decay)

    def with_overrides(self, epochs: int | None = None, batch_size: int | None = None,
                       lr: float | None = None) -> Protocol:
        """A copy with epochs, batch size or learning rate changed; the changed names go to ``overridden``."""
        changes: dict[str, Any] = {}
        for field, value, kind in (("epochs", epochs, int), ("batch_size", batch_size, int), ("lr", lr, float)):
            if value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0 or \
                    (kind is int and int(value) != value) or not math.isfinite(value):
                raise UserError(f"--{field.replace('_', '-')} must be a positive {kind.__name__}, got {value!r}")
            if kind(value) != getattr(self, field):
                changes[field] = kind(value)
        if not changes:
            return self
        overridden = tuple(sorted(set(self.overridden) | set(changes)))
        return dataclasses.replace(self, **changes, overridden=overridden)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record of every setting."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["overridden"] = list(self.overridden)
        d["optimizer"] = "SGD"
        return d


_NB201 = dict(space="nb201", batch_size=256, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
              crop_padding=4, flip=True, cutout=0, mean=NB201_CIFAR10_MEAN, std=NB201_CIFAR10_STD,
              aux_weight=0.0, drop_path=0.0, grad_clip=None, init_channels=16, default_split="cifar10-valid")

PROTOCOLS: dict[str, Protocol] = {
    "nb201-12": Protocol(name="nb201-12", epochs=12, **_NB201),
    "nb201-200": Protocol(name="nb201-200", epochs=200, **_NB201),
    "darts": Protocol(name="darts", space="goldnas", epochs=600, batch_size=96, lr=0.025, momentum=0.9,
                      nesterov=False, weight_decay=3e-4, crop_padding=4, flip=True, cutout=16,
                      mean=DARTS_CIFAR10_MEAN, std=DARTS_CIFAR10_STD, aux_weight=0.4, drop_path=0.2,
                      grad_clip=5.0, init_channels=36, default_split="cifar10"),
}


def get_protocol(name: str) -> Protocol:
    """The documented protocol called ``name``; :class:`UserError` for an unknown name."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UserError(f"--protocol: unknown protocol {name!r}; expected one of {', '.join(PROTOCOLS)}") from None
