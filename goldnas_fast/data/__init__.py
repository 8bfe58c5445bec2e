"""CIFAR-10 data: loading (official batches, npz, embedded sample), the NAS-Bench-201 split, batched
tensor augmentation and a device-resident, seeded, resumable, shardable loader.

Pure PyTorch/numpy; does not need the compiled extension or torchvision.
"""
from __future__ import annotations

from goldnas_fast.data.augment import (CIFAR10_TRAIN_MEAN, CIFAR10_TRAIN_STD, DARTS_CIFAR10_MEAN,
                                       DARTS_CIFAR10_STD, NB201_CIFAR10_MEAN, NB201_CIFAR10_STD, crop_flip,
                                       cutout, normalize, random_crop, random_flip, to_nchw_uint8,
                                       train_transform)
from goldnas_fast.data.cifar import CIFAR10_CLASSES, CifarArrays, load_cifar10, sample_path
from goldnas_fast.data.loader import DeviceLoader, epoch_seed
from goldnas_fast.data.open import open_cifar10
from goldnas_fast.data.split import nb201_cifar10_split, seeded_split

__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_TRAIN_MEAN", "CIFAR10_TRAIN_STD", "CifarArrays", "DARTS_CIFAR10_MEAN",
    "DARTS_CIFAR10_STD", "DeviceLoader", "NB201_CIFAR10_MEAN", "NB201_CIFAR10_STD", "crop_flip", "cutout",
    "epoch_seed", "load_cifar10", "nb201_cifar10_split", "normalize", "open_cifar10", "random_crop", "random_flip",
    "sample_path", "seeded_split", "to_nchw_uint8", "train_transform",
]
