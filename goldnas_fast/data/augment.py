"""Batched CIFAR augmentation as tensor ops (no per-image Python loop, no torchvision).

Every function works on a whole batch ``x`` of shape ``(N, C, H, W)`` on any device and draws its
randomness from an explicit :class:`torch.Generator` (on the CPU or on ``x``'s device; draws are made
on the generator's device and moved to ``x``'s), so a batch is reproducible from the generator's seed.
Streams differ between CPU and CUDA generators, so the same seed gives the same batches per device type.

Training pipeline (:func:`train_transform`), the torchvision order of NB201 and DARTS:

1. ``RandomCrop(32, padding=4)``: zero-pad the **raw** image (black, 0 in 0..255) by ``p`` on each
   side, then take the ``H x W`` window at a per-image offset ``(oy, ox)``, each uniform in ``0..2p``:
   ``out[n, c, i, j] = pad(x)[n, c, oy_n + i, ox_n + j]``.
2. ``RandomHorizontalFlip``: with probability 1/2 per image, ``out[..., j] = in[..., W - 1 - j]``.
3. ``ToTensor`` + ``Normalize``: ``(x / 255 - mean_c) / std_c`` in float32.
4. ``Cutout(length)`` (DARTS, GOLD-NAS): a per-image centre ``(cy, cx)`` uniform over the pixel grid;
   rows ``[max(cy - L//2, 0), min(cy + L//2, H))`` times the same for columns are set to **0 after
   normalisation** (so the patch holds the per-channel mean of the normalisation constants, not
   black). At most ``L x L`` pixels (exactly that when the square lies inside the image).

Random draws, in order: crop ``oy`` (N), crop ``ox`` (N), flip (N uniforms ``< 0.5``), cutout ``cy``
(N), cutout ``cx`` (N); a disabled step draws nothing. :func:`crop_flip` fuses steps 1 and 2 into one
gather and draws exactly what :func:`random_crop` followed by :func:`random_flip` draws.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CIFAR10_TRAIN_MEAN", "CIFAR10_TRAIN_STD", "DARTS_CIFAR10_MEAN", "DARTS_CIFAR10_STD",
           "NB201_CIFAR10_MEAN", "NB201_CIFAR10_STD", "crop_flip", "cutout", "normalize", "normalize_with", "random_crop",
           "random_flip", "to_nchw_uint8", "train_transform"]

# NB201 (`xautodl/datasets/get_dataset_with_transform.py`): rounded 0..255 values divided by 255.
NB201_CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
NB201_CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
# DARTS / GOLD-NAS `utils._data_transforms_cifar10`, as written in that code. They differ from the
# measured statistics below in the 7th digit; the code's values are kept for protocol fidelity.
DARTS_CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
DARTS_CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
# Per-channel mean/std of the 50k CIFAR-10 training images in [0, 1].
CIFAR10_TRAIN_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR10_TRAIN_STD = (0.24703223, 0.24348513, 0.26158784)


def to_nchw_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images, numpy/torch NHWC ``(N, H, W, 3)`` or torch NCHW ``(N, 3, H, W)`` -> contiguous NCHW tensor.

    A torch tensor whose last dim is 3 is taken as NHWC, otherwise one whose dim 1 is 3 as NCHW;
    numpy arrays are always NHWC (the layout of every CIFAR file). Keeps the tensor's device.
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"images: expected a uint8 NHWC array (N, H, W, 3), got {images.dtype} {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images: expected a numpy array or torch tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images: expected a 4-D uint8 tensor, got {images.dtype} {tuple(images.shape)}")
    if images.shape[3] == 3:
        return images.permute(0, 3, 1, 2).contiguous()
    if images.shape[1] == 3:
        return images.contiguous()
    raise ValueError(f"images: expected NHWC (N, H, W, 3) or NCHW (N, 3, H, W), got {tuple(images.shape)}")


def _check_batch(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D (N, C, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")


def _randint(high: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=generator.device).to(device)


def _coin(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand((n,), generator=generator, device=generator.device) < p).to(device)


def _gather_window(x: torch.Tensor, padding: int, oy: torch.Tensor | None, ox: torch.Tensor | None,
                   flip: torch.Tensor | None) -> torch.Tensor:
    """One gather: ``out[n,c,i,j] = pad(x)[n, c, oy_n + i, ox_n + (W-1-j if flip_n else j)]``."""
    n, c, h, w = x.shape
    src = F.pad(x, (padding,) * 4) if padding else x
    hp, wp = h + 2 * padding, w + 2 * padding
    i = torch.arange(h, device=x.device)
    j = torch.arange(w, device=x.device)
    rows = (i if oy is None else oy[:, None] + i).expand(n, h)
    cols = (j if ox is None else ox[:, None] + j).expand(n, w)
    if flip is not None:
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    return src.reshape(n, c, hp * wp).gather(2, index).view(n, c, h, w)


def random_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Per-image random ``H x W`` crop of ``x`` zero-padded by ``padding`` (``RandomCrop(H, padding)``).

    Any dtype; apply it to raw images so that the padding is black. Draws ``oy`` then ``ox``.
    """
    _check_batch(x)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return x
    n = x.shape[0]
    oy = _randint(2 * padding + 1, n, generator, x.device)
    ox = _randint(2 * padding + 1, n, generator, x.device)
    return _gather_window(x, padding, oy, ox, None)


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirrors each image left-right with probability ``p`` (``RandomHorizontalFlip``)."""
    _check_batch(x)
    flip = _coin(x.shape[0], p, generator, x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """:func:`random_crop` then :func:`random_flip` in one gather; same draws, same result."""
    _check_batch(x)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n = x.shape[0]
    oy = ox = f = None
    if padding:
        oy = _randint(2 * padding + 1, n, generator, x.device)
        ox = _randint(2 * padding + 1, n, generator, x.device)
    if flip:
        f = _coin(n, 0.5, generator, x.device)
    if oy is None and f is None:
        return x
    return _gather_window(x, padding, oy, ox, f)


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """DARTS Cutout: zeroes a per-image ``length x length`` square, clipped at the borders (new tensor).

    Centre ``(cy, cx)`` uniform over the grid; rows ``clip(cy - length//2 .. cy + length//2)``
    (half-open), the same for columns. Apply it to the *normalised* batch, as DARTS does.
    """
    _check_batch(x)
    if length < 0:
        raise ValueError(f"cutout length must be >= 0, got {length}")
    if length == 0:
        return x
    n, _, h, w = x.shape
    cy = _randint(h, n, generator, x.device)[:, None]
    cx = _randint(w, n, generator, x.device)[:, None]
    half = length // 2
    i = torch.arange(h, device=x.device)
    j = torch.arange(w, device=x.device)
    in_y = (i >= cy - half) & (i < cy + half)  # (N, H); clipping is implicit in the range of i
    in_x = (j >= cx - half) & (j < cx + half)
    keep = (~(in_y[:, :, None] & in_x[:, None, :])).to(x.dtype)[:, None]
    return x * keep  # as DARTS (img *= mask); a multiply is faster than masked_fill here


def _channel_tensor(v: Sequence[float], c: int, name: str, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32, device=device).flatten()
    if t.numel() != c:
        raise ValueError(f"{name}: expected {c} per-channel values, got {t.numel()}")
    return t.view(1, c, 1, 1)


def normalize(x: torch.Tensor, mean: Sequence[float] = NB201_CIFAR10_MEAN,
              std: Sequence[float] = NB201_CIFAR10_STD) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel in float32 (``ToTensor`` + ``Normalize``); test-time transform.

    ``x`` is uint8 (0..255) or floating (already in [0, 1]); the result is a new float32 tensor.
    """
    _check_batch(x)
    c = x.shape[1]
    m = _channel_tensor(mean, c, "mean", x.device)
    s = _channel_tensor(std, c, "std", torch.device("cpu"))
    if bool((s <= 0).any()):  # checked on the host: a check on the device would synchronize every batch
        raise ValueError(f"std must be > 0, got {list(std)}")
    return normalize_with(x, m, s.to(x.device))


def normalize_with(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """:func:`normalize` with ``(1, C, 1, 1)`` float32 ``mean`` and ``std`` already on ``x``'s device (unchecked).

    Per-batch callers keep the constants on the device: building them from Python numbers each batch
    is a blocking host-to-device copy.
    """
    y = x.float().div_(255) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)
    return y.sub_(mean).div_(std)


def train_transform(x: torch.Tensor, generator: torch.Generator, *, padding: int = 4, flip: bool = True,
                    cutout_length: int = 0, mean: Sequence[float] = NB201_CIFAR10_MEAN,
                    std: Sequence[float] = NB201_CIFAR10_STD) -> torch.Tensor:
    """uint8 NCHW batch -> augmented, normalised float32 batch (crop, flip, normalise, Cutout)."""
    y = normalize(crop_flip(x, generator, padding, flip), mean, std)
    return cutout(y, cutout_length, generator) if cutout_length else y
