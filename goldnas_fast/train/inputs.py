"""Training and evaluation sets of a run: the ``cifar10-valid`` / ``cifar10`` splits on device-resident loaders.

Evaluation-set names follow the NAS-Bench-201 API: ``x-valid`` (the held-out half of the training
set) and ``ori-test`` (the CIFAR-10 test images that are available).

=================  ==============================================  =================================
split              trains on                                       evaluates on
=================  ==============================================  =================================
``cifar10-valid``  NB201 ``train`` half (seed-1021 split, 25k)     ``x-valid`` (other 25k), ``ori-test``
``cifar10``        all training images (50k)                       ``ori-test``
=================  ==============================================  =================================

With fewer than 50,000 training images loaded (the first ``n`` in official order, e.g. one npz
shard or ``--max-train``), ``cifar10-valid`` keeps the parts of the official halves below ``n``
(:func:`goldnas_fast.data.nb201_cifar10_split`). The embedded sample instead is split half/half by
the same seed (:func:`goldnas_fast.data.seeded_split`). Every such deviation is recorded in ``info``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from goldnas_fast.data import CifarArrays, DeviceLoader, nb201_cifar10_split, seeded_split
from goldnas_fast.data.split import NB201_SPLIT_SEED, NB201_TRAIN_SIZE
from goldnas_fast.errors import UserError
from goldnas_fast.train.protocols import Protocol

__all__ = ["SPLITS", "Inputs", "make_inputs", "CIFAR10_TEST_SIZE"]

SPLITS = ("cifar10-valid", "cifar10")
CIFAR10_TEST_SIZE = 10000
EVAL_BATCH = 500


@dataclasses.dataclass
class Inputs:
    """The loaders of one run and a JSON-able description of the split (``info``)."""

    train: DeviceLoader
    eval_sets: dict[str, DeviceLoader]
    info: dict[str, Any]


def make_inputs(arrays: CifarArrays, split: str, protocol: Protocol, device: torch.device, *, seed: int,
                embedded_sample: bool, channels_last: bool = False) -> Inputs:
    """Builds the training loader (protocol's batch size and augmentation) and the evaluation loaders."""
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    n, notes = arrays.num_train, []
    if n == 0:
        raise UserError(f"{arrays.source}: holds no training images")
    if split == "cifar10-valid":
        if embedded_sample:
            train_idx, valid_idx = seeded_split(n, n // 2, NB201_SPLIT_SEED)
            how = (f"embedded sample: seeded half/half split of its {n} training images "
                   f"(random.Random({NB201_SPLIT_SEED}).shuffle), not the NB201 halves")
        elif n == NB201_TRAIN_SIZE:
            train_idx, valid_idx = nb201_cifar10_split()
            how = (f"NB201 cifar10-valid split (seed {NB201_SPLIT_SEED}, 25k/25k, "
                   "= configs/nas-benchmark/cifar-split.txt)")
        elif n < NB201_TRAIN_SIZE:
            train_idx, valid_idx = nb201_cifar10_split(n)
            how = (f"the NB201 halves restricted to the {n} training images loaded (official indices < {n}); "
                   "smaller than the benchmark's 25k/25k")
        else:
            raise UserError(f"{arrays.source}: {n} training images, more than CIFAR-10's {NB201_TRAIN_SIZE}")
        if len(train_idx) == 0 or len(valid_idx) == 0:
            raise UserError(f"{arrays.source}: {n} training image(s) are too few to split into train and valid")
        train_imgs, train_lbls = arrays.train_images, arrays.train_labels
        sets = {"x-valid": (arrays.train_images, arrays.train_labels, valid_idx)}
        info: dict[str, Any] = {"name": split, "how": how, "train_images": len(train_idx),
                                "x-valid_images": len(valid_idx), "first_train_indices": train_idx[:5].tolist(),
                                "first_valid_indices": valid_idx[:5].tolist()}
    else:
        if arrays.num_test == 0:
            raise UserError(f"{arrays.source}: holds no test images, but --split cifar10 reports on the test set "
                            "(use --split cifar10-valid or data with test images)")
        train_idx = None
        train_imgs, train_lbls = arrays.train_images, arrays.train_labels
        sets = {}
        info = {"name": split, "how": f"all {n} training images loaded" + (
            "" if n == NB201_TRAIN_SIZE else f" (CIFAR-10 has {NB201_TRAIN_SIZE}; smaller than the benchmark's)"),
            "train_images": n}
    if arrays.num_test:
        sets["ori-test"] = (arrays.test_images, arrays.test_labels, None)
        info["ori-test_images"] = arrays.num_test
        if arrays.num_test < CIFAR10_TEST_SIZE:
            notes.append(f"ori-test holds only {arrays.num_test} of the {CIFAR10_TEST_SIZE} CIFAR-10 test images "
                         f"(test[0:{arrays.num_test}]); its accuracy is on those, the table's on all "
                         f"{CIFAR10_TEST_SIZE}")
    if embedded_sample:
        notes.append("embedded sample (no --data): a smoke run, not comparable with the benchmark")
    info["notes"] = notes
    info["data"] = arrays.source
    p = protocol
    train = DeviceLoader(train_imgs, train_lbls, p.batch_size, device=device, indices=train_idx, seed=seed,
                         shuffle=True, augment=p.crop_padding > 0 or p.flip, padding=p.crop_padding, flip=p.flip,
                         cutout=p.cutout, mean=p.mean, std=p.std, channels_last=channels_last)
    evals = {name: DeviceLoader(imgs, lbls, EVAL_BATCH, device=device, indices=idx, shuffle=False, mean=p.mean,
                                std=p.std, channels_last=channels_last)
             for name, (imgs, lbls, idx) in sets.items()}
    return Inputs(train=train, eval_sets=evals, info=info)
