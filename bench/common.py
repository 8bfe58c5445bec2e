"""Shared helpers for the benchmark scripts: timing, environment description, markdown tables."""
from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Callable, Sequence

import torch
from torch.utils.benchmark import Timer


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], device: str, min_run_time: float = 1.0) -> float:
    """Median milliseconds of ``fn`` (torch.utils.benchmark: warm-up and CUDA sync included)."""
    for _ in range(3):  # first calls pay for thread-pool start-up, allocator growth and page faults
        fn()
    sync(device)
    # Timer runs with one thread unless told otherwise; time with the threads the process really has.
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def environment(device: str) -> str:
    """One line naming the device, date and versions, for BENCHMARKS.md."""
    if device.startswith("cuda"):
        dev = torch.cuda.get_device_name()
    else:
        dev = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads ({os.cpu_count()} cores)"
    return (f"{datetime.date.today().isoformat()} | {dev} | torch {torch.__version__} | "
            f"CUDA {torch.version.cuda or '-'} | Python {platform.python_version()}")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
