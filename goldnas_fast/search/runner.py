"""The one search loop: configuration, run directory, epochs, checkpoints, log, resume, result.

It knows no algorithm: everything algorithm-specific sits behind
:class:`~goldnas_fast.search.algorithm.SearchAlgorithm`, found by name in
:data:`~goldnas_fast.search.registry.ALGORITHMS`.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from goldnas_fast import outdirs
from goldnas_fast.errors import UserError
from goldnas_fast.progress import progress_bar
from goldnas_fast.runs import RunDir, resume_note
from goldnas_fast.search import distributed as dist_utils
from goldnas_fast.search.algorithm import SearchAlgorithm
from goldnas_fast.search.config import SearchConfig
from goldnas_fast.search.registry import DEFAULT_ALGORITHM, get_algorithm

__all__ = ["run_search", "default_out"]

STREAM_GLOBAL = 1  # epoch_seed stream of the per-epoch global RNG seed (the loader order uses 0)


def default_out(config: SearchConfig) -> Path:
    """``runs/search-SPACE-ALGO-sSEED-TIME``, the run directory when ``--out`` is not given."""
    return outdirs.default_out("search", config.space, config.algo, f"s{config.seed}")


def _seed_epoch(seed: int, epoch: int) -> None:
    """Seeds torch's global RNG (CPU and CUDA) from ``(seed, epoch)`` before each epoch.

    Data order and augmentation have their own per-epoch generators; anything else random in a step
    (dropout, drop-path, a non-deterministic kernel's choice) draws from the global RNG, whose state a
    resumed process would not share with an uninterrupted one. Reseeding per epoch makes a resumed
    search repeat the interrupted one exactly.
    """
    from goldnas_fast.data.loader import epoch_seed

    torch.manual_seed(epoch_seed(seed, epoch, STREAM_GLOBAL))


def _on_main(ctx, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0, its result (or its UserError) on every rank, so no rank waits for a failed one."""
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn()
        except UserError as exc:
            error = str(exc)
    result, error = ctx.broadcast_object((result, error))
    if error is not None:
        raise UserError(error)
    return result


def run_search(args: argparse.Namespace) -> int:
    """Runs the search that ``args`` describe; bad input raises :class:`UserError` before anything is written."""
    algo_cls = get_algorithm(args.algo or DEFAULT_ALGORITHM)
    config = algo_cls.config_type.from_options(vars(args))
    record = config.record()
    ctx = dist_utils.init(args.distributed, config.device)
    out = Path(args.out) if args.out else ctx.broadcast_object(default_out(config))
    _on_main(ctx, lambda: RunDir.check(out, "search", record, resume=args.resume))  # refuse early, write nothing
    algo = algo_cls.build(config, ctx)
    run_dir = _on_main(ctx, lambda: RunDir(out, "search", record, resume=args.resume))
    show = not getattr(args, "no_progress", False)
    return _loop(algo, config.seed, run_dir if ctx.is_main else None, ctx, out, resume=args.resume, show=show)


def _resume_state(run_dir: RunDir, algo: SearchAlgorithm, out: Path) -> tuple[int, list[dict[str, Any]], float]:
    """Loads the last checkpoint into ``algo`` (rank 0); returns ``(epochs done, history, seconds)``."""
    state = run_dir.load_checkpoint()
    if state is None:
        run_dir.truncate_log(0)  # interrupted before the first checkpoint: its log lines are not kept
        return 0, [], 0.0
    if state.get("config") != run_dir.config:
        raise UserError(f"checkpoint {out / RunDir.CHECKPOINT} belongs to another configuration than "
                        f"{out / 'config.json'}; refusing to resume from it")
    try:
        algo.load_state_dict(state["algo"])
        history, epoch, seconds = list(state["history"]), int(state["epoch"]), float(state["seconds"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"checkpoint {out / RunDir.CHECKPOINT} does not fit this search "
                        f"({type(exc).__name__}: {exc})") from None
    if len(history) != epoch:
        raise UserError(f"checkpoint {out / RunDir.CHECKPOINT} is inconsistent ({epoch} epochs, "
                        f"{len(history)} history entries)")
    run_dir.truncate_log(epoch)
    return epoch, history, seconds


def _resume_note(out: Path, history: list[dict[str, Any]], epochs: int) -> str:
    """What ``--resume`` found: a finished run, or the epoch an unfinished one continues after."""
    done = len(history)
    finished = bool(done and (history[-1].get("stop") or done >= epochs))
    reason = (history[-1].get("stop_reason") or "done") if finished else None
    return resume_note(out, done, epochs, finished=finished, what="search", reason=reason)


def _loop(algo: SearchAlgorithm, seed: int, run_dir: RunDir | None, ctx, out: Path, resume: bool = False,
          show: bool = True) -> int:
    start_epoch, history, seconds = _on_main(ctx, lambda: _resume_state(run_dir, algo, out))
    if ctx.world_size > 1 and start_epoch:
        algo.load_state_dict(ctx.broadcast_object(algo.state_dict()))
    if resume and ctx.is_main:
        print(_resume_note(out, history, algo.epochs), file=sys.stderr)

    with algo.run_context():
        history, seconds = _epochs(algo, seed, run_dir, ctx, start_epoch, history, seconds, show)
    if ctx.is_main:
        algo.result(run_dir, history, seconds)
    ctx.barrier()
    ctx.close()
    return 0


def _epochs(algo: SearchAlgorithm, seed: int, run_dir: RunDir | None, ctx, start_epoch: int,
            history: list[dict[str, Any]], seconds: float, show: bool) -> tuple[list[dict[str, Any]], float]:
    """Runs the epochs after ``start_epoch``; returns the history and the seconds spent in all epochs."""
    stopped = bool(history and history[-1].get("stop"))
    epoch = start_epoch
    while epoch < algo.epochs and not stopped:
        t0 = time.perf_counter()
        _seed_epoch(seed, epoch)
        total = algo.progress_total()
        bar = progress_bar(total, f"epoch {epoch + 1}/{algo.epochs}", "img", leave=False,
                           enabled=show and total is not None and ctx.is_main)
        note = algo.progress_note()
        if note:
            bar.set_postfix_str(note, refresh=False)
        record = algo.run_epoch(epoch, progress=lambda info: bar.update(info["n"] * ctx.world_size))
        bar.close()
        stopped = bool(record.get("stop"))
        epoch += 1
        seconds += time.perf_counter() - t0
        record["seconds"] = seconds
        if not stopped and epoch >= algo.epochs:
            record["stop_reason"] = algo.limit_reason
        history.append(record)
        if ctx.is_main:
            run_dir.log(record)
            if stopped or epoch >= algo.epochs or epoch % algo.checkpoint_every == 0:
                run_dir.save_checkpoint({"config": run_dir.config, "epoch": epoch, "history": history,
                                         "seconds": seconds, "algo": algo.state_dict()})
            line = algo.epoch_line(record) if show else None
            if line:
                tqdm.write(line)
    return history, seconds
