"""A device-resident, seeded, resumable and shardable mini-batch loader for small image datasets.

:class:`DeviceLoader` keeps the whole dataset as one uint8 NCHW tensor on the target device (50k
CIFAR-10 images are 150 MB) and builds every batch with a few tensor ops: ``index_select``, the fused
crop+flip gather, normalisation and Cutout (:mod:`goldnas_fast.data.augment`). No worker processes,
no host-to-device copies and no host synchronization per batch.

Randomness of epoch ``e`` comes only from ``(seed, e)``:

* the order: ``randperm(N)`` from a CPU generator seeded with ``epoch_seed(seed, e, 0)``, so it is
  the same on every device and every rank;
* the augmentation: a generator on the loader's device seeded from one 62-bit draw of that same
  order generator and the rank (:func:`_aug_seed`), so ranks augment independently.

Hence iterating epoch ``k`` after ``set_epoch(k)`` in a fresh process (a resumed run) gives exactly
the batches an uninterrupted run gives at epoch ``k``. CPU and CUDA augmentation streams differ, so
reproducibility holds per device type. :meth:`DeviceLoader.epoch_batches` takes a caller's generator
instead (e.g. the trainer's per-epoch generator) and draws the same way from it.

Distributed shards (``rank``, ``world_size``), as ``DistributedSampler(drop_last=True)``: the epoch's
permutation is cut to ``world_size * floor(N / world_size)`` entries and rank ``r`` takes entries
``r, r + world_size, ...``; the parts are disjoint, equal in size, and together cover all but at most
``world_size - 1`` images per epoch. ``batch_size`` is per rank.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from goldnas_fast.data.augment import NB201_CIFAR10_MEAN, NB201_CIFAR10_STD, crop_flip, cutout, normalize, \
    normalize_with, to_nchw_uint8

__all__ = ["DeviceLoader", "epoch_seed"]

Batch = tuple[torch.Tensor, torch.Tensor]
_STREAM_ORDER = 0


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for ``(seed, epoch, stream)`` by numpy ``SeedSequence`` hashing (stable, well mixed)."""
    if seed < 0 or epoch < 0 or stream < 0:
        raise ValueError(f"seed, epoch and stream must be >= 0, got {seed}, {epoch}, {stream}")
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _aug_seed(draw: int, rank: int) -> int:
    return int(np.random.SeedSequence([draw, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


class DeviceLoader:
    """Mini-batches ``(images float32 normalised NCHW, labels int64)`` of a dataset held on ``device``.

    Args:
        images: uint8 images, numpy NHWC ``(N, H, W, 3)`` or torch NHWC/NCHW.
        labels: ``(N,)`` integer labels.
        batch_size: images per batch (per rank).
        device: where the data and the batches live (default: CPU).
        indices: optional subset of ``range(N)`` to serve (e.g. one half of a split), in this order.
        seed: run seed; with the epoch it fixes order and augmentation.
        shuffle: draw a new order each epoch (``False``: dataset order, e.g. for evaluation).
        augment: random crop (zero ``padding``) and horizontal flip (if ``flip``).
        padding, flip: crop padding and whether to flip, used when ``augment``.
        cutout: Cutout square side, applied after normalisation (0: none; independent of ``augment``).
        mean, std: per-channel normalisation constants for images in [0, 1].
        drop_last: drop the last, smaller batch of each epoch.
        rank, world_size: this process's shard of each epoch (see the module docstring).
        channels_last: return image batches in ``torch.channels_last`` memory format.

    ``len(loader)`` is the number of batches per epoch. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor | Sequence[int],
                 batch_size: int, *, device: str | torch.device | None = None,
                 indices: np.ndarray | torch.Tensor | Sequence[int] | None = None, seed: int = 0,
                 shuffle: bool = True, augment: bool = False, padding: int = 4, flip: bool = True,
                 cutout: int = 0, mean: Sequence[float] = NB201_CIFAR10_MEAN,
                 std: Sequence[float] = NB201_CIFAR10_STD, drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, channels_last: bool = False) -> None:
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not isinstance(world_size, (int, np.integer)) or world_size < 1:
            raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
        if not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an int in 0..{world_size - 1}, got {rank!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if padding < 0 or cutout < 0:
            raise ValueError(f"padding and cutout must be >= 0, got {padding}, {cutout}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if isinstance(images, np.ndarray):  # validate, then move NHWC bytes first: the permute runs on the device
            to_nchw_uint8(images[:1])
            images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        x = to_nchw_uint8(images).to(self.device)
        y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"labels: expected shape ({x.shape[0]},) to match the images, got {tuple(y.shape)}")
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
            raise ValueError(f"labels: expected integers, got {y.dtype}")
        if indices is not None:
            idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
            if idx.dim() != 1 or idx.dtype.is_floating_point or idx.dtype == torch.bool:
                raise ValueError(f"indices: expected a 1-D integer index, got {idx.dtype} {tuple(idx.shape)}")
            idx = idx.long().cpu()
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= x.shape[0]):
                raise ValueError(f"indices: must lie in 0..{x.shape[0] - 1}")
            x, y = x.index_select(0, idx.to(x.device)), y.index_select(0, idx.to(y.device))
        self.images = x
        self.labels = y.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.seed, self.shuffle, self.augment = int(seed), bool(shuffle), bool(augment)
        self.padding, self.flip, self.cutout = int(padding), bool(flip), int(cutout)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.drop_last, self.rank, self.world_size = bool(drop_last), int(rank), int(world_size)
        self.channels_last = bool(channels_last)
        self.epoch = 0
        normalize(self.images[:1], self.mean, self.std)  # validates mean/std against the channel count
        c = self.images.shape[1]
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32).view(1, c, 1, 1).to(self.device)
        self._std_t = torch.tensor(self.std, dtype=torch.float32).view(1, c, 1, 1).to(self.device)

    # ------------------------------------------------------------------------------------------ sizes
    @property
    def num_images(self) -> int:
        """Images in the (possibly subset) dataset, all ranks together."""
        return int(self.labels.shape[0])

    @property
    def num_samples(self) -> int:
        """Images this rank serves per epoch (before ``drop_last``)."""
        return self.num_images // self.world_size if self.world_size > 1 else self.num_images

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch (0-based) whose order and augmentation the next iteration yields."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    # ------------------------------------------------------------------------------------------ batches
    def generator_for(self, epoch: int) -> torch.Generator:
        """The CPU generator that fixes epoch ``epoch`` (order, then the augmentation seed)."""
        return torch.Generator().manual_seed(epoch_seed(self.seed, epoch, _STREAM_ORDER))

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch_batches(self.generator_for(self.epoch))

    def local_indices(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """This rank's dataset indices for one epoch, in batch order (draws the order from ``generator``)."""
        n = self.num_images
        if self.shuffle:
            if generator is None:
                raise ValueError("generator is required when shuffle=True")
            order = torch.randperm(n, generator=generator, device=generator.device).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        if self.world_size > 1:
            per = n // self.world_size
            order = order[: per * self.world_size][self.rank::self.world_size]
        return order

    def epoch_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of batches with order and augmentation drawn from ``generator``.

        Draws, in order: the permutation (if ``shuffle``), then one 62-bit integer that, hashed with
        the rank, seeds the augmentation generator on the loader's device (if any augmentation).
        """
        order = self.local_indices(generator)
        randomize = self.augment or self.cutout > 0
        aug: torch.Generator | None = None
        if randomize:
            draw = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
            aug = torch.Generator(device=self.device).manual_seed(_aug_seed(draw, self.rank))
        return self._batches(order, aug)

    def _batches(self, order: torch.Tensor, aug: torch.Generator | None) -> Iterator[Batch]:
        b = self.batch_size
        for k in range(len(self)):
            idx = order[k * b:(k + 1) * b]
            x = self.images.index_select(0, idx)
            if aug is not None and self.augment:
                x = crop_flip(x, aug, self.padding, self.flip)
            x = normalize_with(x, self._mean_t, self._std_t)
            if aug is not None and self.cutout:
                x = cutout(x, self.cutout, aug)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels.index_select(0, idx)
