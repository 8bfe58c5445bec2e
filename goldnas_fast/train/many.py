"""Training several NAS-Bench-201 architectures at once: ``goldnas-fast train --arch 3,1462,100-110``.

Each architecture is one ordinary single-architecture run, as ``goldnas-fast train --arch INDEX --out
OUT/arch-INDEX`` with the same seed and options would make it, in its own worker process; up to
``--workers`` of them run at the same time on the one device. Its console output goes to
``OUT/logs/arch-INDEX.txt``. When all have finished, ``OUT/summary.json`` and a printed table compare
them with the NAS-Bench-201 table (:func:`summarize`).

Why processes: a run that is alone in its process is the run made alone, by construction (own
global RNG, own cuDNN/TF32 flags, own CUDA graphs, own stdout), with no code of its own beyond
starting the runs: bit for bit on the CPU; on CUDA up to the convolution algorithms that
``cudnn.benchmark`` picks by timing (:mod:`goldnas_fast.train.trainer`), which busy neighbours change. Threads in one process would share all of these. On the CPU a
worker runs ``threads / workers`` intra-op threads, which avoids the spinning of several OpenMP
threads on a busy machine; whether processes beat one-after-another runs there depends on idle
cores (BENCHMARKS.md). On a GPU, separate processes overlap one run's host work (Python, launches)
with another's kernels; their kernels overlap too only under MPS. What is still to be measured
there: workers 1 / 4 / 12, with and without MPS; CUDA streams in one process (one graph per
architecture replayed round-robin on its own stream) are the alternative if neither scales.

On the CPU a result depends on the number of intra-op threads; a worker uses
``max(1, torch.get_num_threads() // workers)``, so it equals a run alone with that many threads.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import copy
import json
import math
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from goldnas_fast.errors import UserError
from goldnas_fast.runs import atomic_write_json

__all__ = ["arch_dir", "run_many", "spearman", "summarize"]

CUDA_MAX_WORKERS = 8


def arch_dir(out: str | Path, index: int) -> Path:
    """The run directory of NB201 architecture ``index`` in the list run ``out``."""
    return Path(out) / f"arch-{index}"


def _workers(requested: int | None, n: int, device: str) -> int:
    if requested is not None:
        if requested < 1:
            raise UserError(f"--workers must be a positive integer, got {requested}")
        return min(requested, n)
    if device.startswith("cuda"):
        return min(n, CUDA_MAX_WORKERS)
    return max(1, min(n, os.cpu_count() or 1))


def _one(namespace: dict[str, Any], log: str, threads: int) -> tuple[int, str]:
    """Runs one architecture (in a worker process, or in this one); returns (status, error message)."""
    from goldnas_fast.train.cli import run

    torch.set_num_threads(threads)
    args = argparse.Namespace(**namespace)
    # appended: a resumed list keeps the console output of the part before the interruption
    with open(log, "a", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            return int(run(args) or 0), ""
        except UserError as exc:
            print(f"error: {exc}", file=f)
            return 2, str(exc)
        except Exception as exc:  # e.g. a diverged run: the others go on; the traceback stays in the log
            traceback.print_exc(file=f)
            return 1, f"{type(exc).__name__}: {exc}"


def run_many(args: argparse.Namespace, targets: Sequence[Any]) -> int:
    """Trains every target (NB201 only) as its own run under ``args.out``; writes and prints the summary."""
    if any(t.space != "nb201" for t in targets):
        raise UserError("--arch lists are NB201 architectures")
    if args.from_search is not None:
        raise UserError("--from-search names one architecture; do not combine it with an --arch list")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if not args.resume and out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; pass --resume to continue these runs or choose another --out")
    workers = _workers(args.workers, len(targets), str(args.device))
    threads = max(1, torch.get_num_threads() // workers)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    jobs = {}
    for t in targets:
        ns = copy.copy(vars(args))
        ns.update(arch=str(t.arch_index), out=str(arch_dir(out, t.arch_index)), no_progress=True, workers=None)
        ns.pop("_module", None)
        jobs[t.arch_index] = (ns, str(out / "logs" / f"arch-{t.arch_index}.txt"))
    print(f"training {len(targets)} architectures, {workers} at a time ({threads} CPU thread(s) each); "
          f"logs in {out / 'logs'}", file=sys.stderr)
    t0 = time.perf_counter()
    status: dict[int, tuple[int, str]] = {}
    if workers == 1:
        for index, (ns, log) in jobs.items():
            status[index] = _one(ns, log, threads)
            _report_one(out, index, status[index])
    else:
        # spawn: a forked child would inherit an initialised CUDA context (and OpenMP pools) it cannot use;
        # one architecture per process where Python allows it (3.11+), so no cache outlives its run
        fresh = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
        with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), **fresh) as pool:
            futures = {pool.submit(_one, ns, log, threads): index for index, (ns, log) in jobs.items()}
            for fut in cf.as_completed(futures):
                index = futures[fut]
                try:
                    status[index] = fut.result()
                except Exception as exc:  # the worker died or raised: keep the others' results
                    status[index] = (1, f"{type(exc).__name__}: {exc}")
                _report_one(out, index, status[index])
    wall = time.perf_counter() - t0
    results = {i: _read_result(arch_dir(out, i)) for i in jobs}
    summary = summarize(results, wall_seconds=wall, workers=workers)
    summary["failed"] = {str(i): msg or f"exit status {code}" for i, (code, msg) in status.items() if code != 0}
    atomic_write_json(out / "summary.json", summary)
    print(format_summary(summary))
    return 1 if summary["failed"] else 0


def _report_one(out: Path, index: int, status: tuple[int, str]) -> None:
    code, msg = status
    result = _read_result(arch_dir(out, index))
    if code != 0:
        print(f"arch {index}: failed ({msg or f'exit status {code}'}; see {out}/logs/arch-{index}.txt)",
              file=sys.stderr)
    elif result is None:
        print(f"arch {index}: stopped before the last epoch", file=sys.stderr)
    else:
        from goldnas_fast.train.report import summary_line

        print(f"arch {index}: {summary_line(result)}", file=sys.stderr)


def _read_result(run: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run / "result.json").read_text())
    except (OSError, ValueError):
        return None


def _ranks(v: Sequence[float]) -> list[float]:
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share their mean rank
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get mean ranks); NaN for fewer than 2 pairs or a constant side."""
    if len(a) != len(b):
        raise ValueError(f"spearman: {len(a)} and {len(b)} values")
    if len(a) < 2:
        return math.nan
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else math.nan


def summarize(results: Mapping[int, Mapping[str, Any] | None], wall_seconds: float | None = None,
              workers: int | None = None) -> dict[str, Any]:
    """One row per architecture (final accuracies, table values and differences) and, per table column
    with at least two finished architectures, mean |diff| and Spearman's rho of measured against table.

    ``results`` maps the NB201 index to its ``result.json`` (None: not finished).
    """
    rows, columns = [], {}
    for index, r in results.items():
        row: dict[str, Any] = {"arch_index": index, "finished": r is not None}
        if r is not None:
            row.update(arch=r["arch"], final_acc=r["final_acc"], seconds=r["seconds"]["total"],
                       images_per_s=r["images_per_s"])
            for b in r.get("benchmark", []):
                row[b["column"]] = b["table_acc"]
                row[f"diff_{b['column']}"] = b["difference"]
                col = columns.setdefault(b["column"], {"eval_set": b["eval_set"], "measured": [], "table": [],
                                                       "comparable": True})
                col["measured"].append(b["measured_acc"])
                col["table"].append(b["table_acc"])
                col["comparable"] = col["comparable"] and b["comparable"]
        rows.append(row)
    stats = {}
    for name, c in columns.items():
        n = len(c["measured"])
        stats[name] = {"eval_set": c["eval_set"], "archs": n, "comparable": c["comparable"],
                       "mean_abs_diff": sum(abs(m - t) for m, t in zip(c["measured"], c["table"])) / n,
                       "spearman": _finite(spearman(c["measured"], c["table"]))}
    return {"kind": "train-many", "archs": rows, "vs_table": stats, "wall_seconds": wall_seconds,
            "workers": workers}


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a fixed-width table plus one line per table column."""
    cols = sorted({c for r in summary["archs"] for c in r if c.startswith("c10_") or c.startswith("diff_")},
                  key=lambda c: (c.removeprefix("diff_"), c.startswith("diff_")))
    sets = sorted({k for r in summary["archs"] for k in r.get("final_acc", {})})
    head = ["arch", *sets, *cols, "seconds"]
    lines = ["  ".join(f"{h:>12}" for h in head)]
    for r in summary["archs"]:
        cells = [str(r["arch_index"])]
        cells += [f"{r['final_acc'][s]:.2f}" if s in r.get("final_acc", {}) else "-" for s in sets]
        cells += [f"{r[c]:+.2f}" if c.startswith("diff_") and c in r else f"{r[c]:.2f}" if c in r else "-"
                  for c in cols]
        cells.append(f"{r['seconds']:.1f}" if r.get("finished") else "not finished")
        lines.append("  ".join(f"{c:>12}" for c in cells))
    for name, s in summary["vs_table"].items():
        rho = "n/a" if s["spearman"] is None else f"{s['spearman']:.3f}"
        lines.append(f"{name} ({s['eval_set']}, {s['archs']} archs{'' if s['comparable'] else ', not comparable'}): "
                     f"mean |diff| {s['mean_abs_diff']:.2f}, Spearman {rho}")
    if summary.get("wall_seconds") is not None:
        lines.append(f"wall {summary['wall_seconds']:.1f} s with {summary['workers']} worker(s)")
    return "\n".join(lines)
