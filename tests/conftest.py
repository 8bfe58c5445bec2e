"""Shared pytest fixtures: device lists and the location of ../shared."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def cuda_ready() -> bool:
    """A CUDA device is present and the CUDA kernels were compiled in."""
    if not torch.cuda.is_available():
        return False
    from goldnas_fast._library import cuda_version

    return cuda_version() > 0


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not cuda_ready(), reason="no CUDA device/kernels"))]


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED
