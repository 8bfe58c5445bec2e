"""Loads the compiled extension, which registers the ``torch.ops.goldnas`` operators."""
from __future__ import annotations

import torch

try:
    from goldnas_fast import _C  # noqa: F401  (importing it runs the TORCH_LIBRARY registrations)
except ImportError as exc:  # pragma: no cover - only hit on a broken install
    raise ImportError(
        "goldnas_fast's compiled extension (goldnas_fast._C) is missing or does not match the installed "
        f"torch {torch.__version__}. Rebuild it against this torch with "
        "`pip install --no-build-isolation .` from the source tree."
    ) from exc


def cuda_version() -> int:
    """CUDA runtime version the kernels were compiled with, or -1 for a CPU-only build."""
    return int(torch.ops.goldnas._cuda_version())


def cpu_capability() -> str:
    """Which build of the CPU loops runs: ``'avx2'`` (float32 ``mixed_sum`` on CPUs with AVX2) or
    ``'baseline'``. The environment variable ``GOLDNAS_CPU_CAPABILITY=baseline`` forces the baseline; it is
    read once per process, at the first ``mixed_sum`` or ``cpu_capability()`` call, so set it before."""
    return {0: "baseline", 1: "avx2"}[int(torch.ops.goldnas._cpu_capability())]


def has_cuda_kernels() -> bool:
    """True when the CUDA kernels were compiled in and a CUDA device is usable."""
    return cuda_version() > 0 and torch.cuda.is_available()
