"""What every supernet search builds before its first epoch: the data, the seeded supernet and the
per-process loaders, all checked before the run directory is touched."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from goldnas_fast.errors import UserError
from goldnas_fast.search.config import SupernetConfig
from goldnas_fast.search.distributed import Context
from goldnas_fast.spaces.adapter import SearchSpace

__all__ = ["SupernetSetup", "prepare_supernet", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seeds Python's, NumPy's and torch's global generators (the supernet's initial weights)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class SupernetSetup:
    """A supernet search's inputs.

    Attributes:
        space: the search space (supernet on ``ctx.device``'s host; the algorithm moves it).
        loaders: one loader (one-level search) or two (train half, valid half), this process's shards.
        batch: images per process and step.
    """

    space: SearchSpace
    loaders: list[Any]
    batch: int


def prepare_supernet(config: SupernetConfig, ctx: Context, *, gate: str | None = None,
                     split: bool = False) -> SupernetSetup:
    """Opens the data, seeds, builds the space and the loaders.

    Args:
        config: the search's configuration.
        ctx: the distributed context (the device and this process's shard).
        gate: the NAS-Bench-201 gate rule (``'sigmoid'`` or ``'softmax'``); ``None`` for spaces without one.
        split: two loaders on the seeded train/valid halves (bi-level search) instead of one on all images.

    Raises:
        UserError: unreadable or too small data, a bad space argument, a batch size that does not fit.
    """
    from goldnas_fast.data.loader import DeviceLoader
    from goldnas_fast.data.open import open_cifar10
    from goldnas_fast.data.split import seeded_split
    from goldnas_fast.spaces import make_space

    data = open_cifar10(config.data, max_train=config.max_train, max_test=0, min_train=2)
    seed_everything(config.seed)
    kwargs = config.space_kwargs() if gate is None else {**config.space_kwargs(), "gate": gate}
    try:
        space = make_space(config.space, **kwargs)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    batch = config.batch_size // ctx.world_size
    if batch < 1 or batch * ctx.world_size != config.batch_size:
        raise UserError(f"--batch-size {config.batch_size} must be a multiple of the {ctx.world_size} processes")
    loader_kw = dict(device=ctx.device, seed=config.seed, augment=True, drop_last=True, rank=ctx.rank,
                     world_size=ctx.world_size)
    if split:
        halves = seeded_split(data.num_train)
        loaders = [DeviceLoader(data.train_images, data.train_labels, batch, indices=idx, **loader_kw)
                   for idx in halves]
        what = f"the {min(len(h) for h in halves)} images of each half of the train/valid split"
    else:
        loaders = [DeviceLoader(data.train_images, data.train_labels, batch, **loader_kw)]
        what = f"the {data.num_train} training images"
    if any(len(loader) == 0 for loader in loaders):
        raise UserError(f"--batch-size {config.batch_size} is larger than {what}")
    return SupernetSetup(space, loaders, batch)
