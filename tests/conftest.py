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


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors: intra-op threads only add OpenMP spin-waiting on a shared 2-core machine (training steps
    observed 10-20x slower with two). Training runs compare exactly only at one thread too: worker processes
    of ``train --arch A,B`` get ``threads // workers`` threads.

    Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """64 training and 32 test images of the embedded sample as one npz: keeps training and evaluation cheap."""
    import numpy as np

    from goldnas_fast.data import load_cifar10

    a = load_cifar10(None, max_train=64, max_test=32)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, train_images=a.train_images, train_labels=a.train_labels, test_images=a.test_images,
             test_labels=a.test_labels)
    return str(path)


def assert_replays_without_sync(steps, batches) -> None:
    """Runs ``steps`` (a step runner with a ``captures`` count) over ``batches``: 3 warm-up steps and the
    capture, then every later batch is built and replayed under ``torch.cuda.set_sync_debug_mode('error')``,
    which raises on any implicit host-device synchronization; no re-capture may happen."""
    for _ in range(4):  # 3 warm-up steps and the capture
        steps(*next(batches))
    assert steps.captures == 1
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in batches:
            steps(x, y)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert steps.captures == 1
