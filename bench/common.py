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


def keep_freed_memory() -> bool:
    """Makes glibc's malloc serve blocks below 32 MiB from its heap and keep freed memory there
    (``mallopt`` M_MMAP_THRESHOLD, M_TRIM_THRESHOLD), as jemalloc/tcmalloc or a caching allocator would.
    PyTorch's CPU allocator does not cache, and by default glibc gives heap memory back (trimming) and
    keeps per-thread heaps, so multi-MiB tensors keep landing on fresh pages whose first touch page-faults:
    on a 2-core VM that kernel time (in one run most of its time, in sys) swung the micro-benchmarks by 2x
    at random, whichever mode happened to get recycled memory. Applied to every mode alike (modes that
    allocate more gain more); returns whether it took effect (glibc only)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or not name:
        return False
    libc = ctypes.CDLL(name)
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def time_ms(fn: Callable[[], object], device: str, min_run_time: float = 1.0) -> float:
    """Median milliseconds of ``fn`` (torch.utils.benchmark: warm-up and CUDA sync included)."""
    for _ in range(3):  # first calls pay for thread-pool start-up, allocator growth and page faults
        fn()
    sync(device)
    # Timer runs with one thread unless told otherwise; time with the threads the process really has.
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def compare_samples(fns: dict[str, Callable[[], object]], device: str, min_run_time: float = 1.0,
                    rounds: int = 9) -> dict[str, list[float]]:
    """Seconds per call of each function in every round, measured interleaved.

    Each round times a short block of calls of every function in turn (the order rotating from round to
    round), so that load from other processes on a shared machine falls on all of them alike; sample ``r``
    of every function comes from round ``r``, so ratios can be taken round by round (paired). A function
    that raises gets no samples, with its error printed, not hidden.
    """
    import sys
    import time

    live: dict[str, Callable[[], object]] = {}
    per_call: dict[str, float] = {}
    for name, fn in fns.items():
        try:
            for _ in range(3):  # first calls pay for thread-pool start-up, allocator growth and page faults
                fn()
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            per_call[name] = max(time.perf_counter() - t0, 1e-6)
            live[name] = fn
        except Exception as exc:  # noqa: BLE001
            print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    calls = {name: max(1, int(min_run_time / rounds / per_call[name])) for name in live}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(live)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)] if names else []:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                live[name]()
            sync(device)
            samples[name].append((time.perf_counter() - t0) / calls[name])
    return samples


def compare_ms(fns: dict[str, Callable[[], object]], device: str, min_run_time: float = 1.0,
               rounds: int = 9) -> dict[str, float]:
    """Median milliseconds per call of each function over the rounds of :func:`compare_samples` (NaN for
    a function that raised)."""
    return median_ms(compare_samples(fns, device, min_run_time, rounds))


def median_ms(samples: dict[str, list[float]]) -> dict[str, float]:
    """Median milliseconds per call of each function's samples (seconds), NaN where there are none."""
    import statistics

    return {name: 1e3 * statistics.median(s) if s else float("nan") for name, s in samples.items()}


def paired_ratio(samples: dict[str, list[float]], num: str, den: str) -> tuple[float, float, float]:
    """Median, first and third quartile over rounds of ``num``'s time / ``den``'s time in the same round."""
    import statistics

    ratios = sorted(a / b for a, b in zip(samples.get(num, []), samples.get(den, [])))
    if len(ratios) < 2:
        return (ratios[0],) * 3 if ratios else (float("nan"),) * 3
    q1, med, q3 = statistics.quantiles(ratios, n=4)
    return med, q1, q3


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


def environment_info(device: str) -> dict[str, object]:
    """The environment as a dict, for the ``--json`` output of every benchmark."""
    info: dict[str, object] = {"date": datetime.date.today().isoformat(), "device": device,
                               "torch": torch.__version__, "cuda": torch.version.cuda,
                               "python": platform.python_version(), "threads": torch.get_num_threads(),
                               "cores": os.cpu_count()}
    if device.startswith("cuda"):  # a wrapper (bench_search) may ask on a machine without one
        info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    return info


def write_json(path: os.PathLike | str | None, bench: str, device: str, args: object, rows: Sequence[dict],
               **extra: object) -> None:
    """Writes ``{"bench", "environment", "args", "rows", ...}`` to ``path`` (nothing when ``path`` is None).

    The file is replaced atomically, so a benchmark may call this after every row: if it is killed at its
    time cap, the rows measured so far are on disk and readable.
    """
    import json
    from pathlib import Path

    if path is None:
        return
    path = Path(path)
    payload = {"bench": bench, "environment": environment_info(device),
               "args": {k: v if isinstance(v, (int, float, bool, type(None))) else str(v)
                        for k, v in vars(args).items()},
               "rows": list(rows), **extra}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(payload), indent=1, default=str))
    os.replace(tmp, path)


def _finite(value: object) -> object:
    """``value`` with NaN and infinities replaced by None (strict JSON has no NaN)."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


_SESSIONS: set[int] = set()  # process groups of running run_capped children


def _kill_sessions(signum: int, frame: object) -> None:
    import signal

    for pgid in list(_SESSIONS):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise SystemExit(128 + signum)


def run_capped(cmd: Sequence[str], timeout: float | None) -> tuple[int | None, str, str, float]:
    """Runs ``cmd`` in its own session; returns (exit status or None if stopped at ``timeout``, stdout,
    stderr, wall seconds).

    At ``timeout`` the whole session is killed (grandchildren too, e.g. Inductor's compile workers). Its
    own session puts it out of reach of a ``timeout`` wrapped around this process, so SIGTERM to this
    process kills the session first and then exits.
    """
    import signal
    import subprocess
    import time

    if signal.getsignal(signal.SIGTERM) is not _kill_sessions:
        signal.signal(signal.SIGTERM, _kill_sessions)
    t0 = time.perf_counter()
    child = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    _SESSIONS.add(child.pid)
    try:
        out, err = child.communicate(timeout=timeout)
        rc: int | None = child.returncode
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        rc = None
    finally:
        _SESSIONS.discard(child.pid)
    return rc, out or "", err or "", time.perf_counter() - t0
