"""Stem and auxiliary head shared by the GOLD-NAS search and re-training networks (DARTS CIFAR skeleton)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["make_stem", "AuxiliaryHead", "check_int"]


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Returns ``value`` if it is an int >= ``minimum``, else raises ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def make_stem(C_out: int, in_channels: int = 3) -> nn.Sequential:
    """3x3 conv (stride 1, no bias) to ``C_out`` channels, then affine BN (DARTS CIFAR stem)."""
    return nn.Sequential(nn.Conv2d(in_channels, C_out, 3, padding=1, bias=False), nn.BatchNorm2d(C_out))


class AuxiliaryHead(nn.Module):
    """DARTS ``AuxiliaryHeadCIFAR``: ReLU, pool to 2x2, 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, BN,
    ReLU, linear.

    DARTS pools an 8x8 map (CIFAR, after two reductions) with ``AvgPool2d(5, stride=3)``; that exact pooling
    is used for 8x8 inputs. For other sizes (e.g. 16x16 images, 4x4 at the head) adaptive average pooling
    to 2x2 stands in, so the head works at any resolution. The ReLU is not in place (DARTS's in-place ReLU
    also rectifies the main path's tensor, which is harmless there but surprising).
    """

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if x.shape[-2:] == (8, 8):
            x = F.avg_pool2d(x, 5, stride=3, padding=0, count_include_pad=False)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))
