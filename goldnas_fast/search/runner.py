"""Runs one search from parsed command-line arguments: data, space, loop, checkpoints, results, plot."""
from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from goldnas_fast.errors import UserError
from goldnas_fast.runs import RunDir
from goldnas_fast.search import distributed as dist_utils

__all__ = ["run_search", "search_config"]

SAMPLE_EPOCHS = 30
SAMPLE_LAMBDA0 = 1e-3
STREAM_GLOBAL = 1  # epoch_seed stream of the per-epoch global RNG seed (the loader order uses 0)
EVOLUTION_POPULATION = 10  # the NAS-Bench-201 setting
SAMPLE_NB201_N = 2  # 8 cells instead of 17: the demo on the embedded sample must finish in minutes on a CPU


def search_config(args: argparse.Namespace) -> dict[str, Any]:
    """The complete configuration of a run, defaults resolved; it must match to resume."""
    sample = args.data is None
    nb201 = args.space == "nb201"
    cfg: dict[str, Any] = {
        "space": args.space, "algo": args.algo, "seed": args.seed,
        "data": str(Path(args.data).resolve()) if args.data else "embedded-sample",
        "max_train": args.max_train,
    }
    if args.algo in ("random", "evolution"):
        if not nb201:
            raise UserError(f"--algo {args.algo} queries the NAS-Bench-201 table; use --space nb201")
        cfg["evaluations"] = args.evaluations
        return cfg
    if args.algo == "darts" and not nb201:
        raise UserError("--algo darts is the NAS-Bench-201 baseline; use --space nb201")
    cfg.update({
        "epochs": args.epochs or (50 if args.algo == "darts" else SAMPLE_EPOCHS if sample else 100),
        "batch_size": args.batch_size or (64 if nb201 else 96),
        "C": args.C or (16 if nb201 else 36),
        "backend": args.backend, "lean": args.lean,
        "device_type": _device_type(args.device),
    })
    if nb201:
        cfg["N"] = args.N or (SAMPLE_NB201_N if sample else 5)
    else:
        cfg["layers"] = args.layers
        cfg["ops"] = args.ops.split(",") if args.ops else ["skip_connect", "sep_conv_3x3"]
    if args.algo == "goldnas":
        cfg.update({
            "lambda0": args.lambda0 if args.lambda0 is not None else (SAMPLE_LAMBDA0 if sample else 1e-5),
            "c0": args.c0, "n0": args.n0, "xi_min": args.xi_min, "xi_max": args.xi_max, "mu": args.mu,
            "flops_min": args.flops_min if args.flops_min is not None else (None if nb201 else 240.0),
            "resource": args.resource, "lr_weights": args.lr_weights or 0.01, "lr_alpha": args.lr_alpha,
        })
    else:
        cfg["lr_weights"] = args.lr_weights or 0.025
    return cfg


def _device_type(device: str) -> str:
    from goldnas_fast.devices import parse_device

    return parse_device(device).type


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_epoch(seed: int, epoch: int) -> None:
    """Seeds torch's global RNG (CPU and CUDA) from ``(seed, epoch)`` before each epoch.

    Data order and augmentation have their own per-epoch generators; anything else random in a step
    (dropout, drop-path, a non-deterministic kernel's choice) draws from the global RNG, whose state a
    resumed process would not share with an uninterrupted one. Reseeding per epoch makes a resumed
    search repeat the interrupted one exactly.
    """
    from goldnas_fast.data.loader import epoch_seed

    torch.manual_seed(epoch_seed(seed, epoch, STREAM_GLOBAL))


def _load_data(cfg: dict[str, Any]):
    from goldnas_fast.data.open import open_cifar10

    return open_cifar10(None if cfg["data"] == "embedded-sample" else cfg["data"], max_train=cfg["max_train"],
                        max_test=0, min_train=2)


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
    cfg = search_config(args)
    ctx = dist_utils.init(args.distributed, args.device)
    out = Path(args.out) if args.out else default_out_path(args, ctx)
    _on_main(ctx, lambda: RunDir.check(out, "search", cfg, resume=args.resume))  # refuse early, write nothing
    if cfg["algo"] in ("random", "evolution"):
        if cfg["algo"] == "evolution" and cfg["evaluations"] < EVOLUTION_POPULATION:
            raise UserError(f"--evaluations must be >= the evolution population ({EVOLUTION_POPULATION}), "
                            f"got {cfg['evaluations']}")
        run_dir = RunDir(out, "search", cfg, resume=args.resume) if ctx.is_main else None
        return _run_multitrial(cfg, run_dir)
    setup = _build_supernet(cfg, ctx)
    run_dir = _on_main(ctx, lambda: RunDir(out, "search", cfg, resume=args.resume))
    run_dir = run_dir if ctx.is_main else None
    return _run_supernet(cfg, setup, run_dir, ctx, out)


def default_out_path(args: argparse.Namespace, ctx) -> Path:
    from goldnas_fast.search.cli import default_out

    return ctx.broadcast_object(default_out(args))


def _run_multitrial(cfg: dict[str, Any], run_dir: RunDir | None) -> int:
    from goldnas_fast.nb201.benchmark import Benchmark
    from goldnas_fast.search.multitrial import REPORT_METRIC, random_search, regularized_evolution
    from goldnas_fast.search.results import finish_nb201_result

    start = time.perf_counter()
    bench = Benchmark()
    if cfg["algo"] == "random":
        history = random_search(bench, cfg["evaluations"], cfg["seed"])
    else:
        history = regularized_evolution(bench, cfg["evaluations"], cfg["seed"], population=EVOLUTION_POPULATION)
    best = -float("inf")
    recorded = []
    for step, (arch, signal) in enumerate(zip(history.archs, history.signals), start=1):
        if signal > best:  # the incumbent changed: record it
            best = signal
            recorded.append({"evaluation": step, "arch": arch, "signal_cifar10_valid_acc_12": signal})
    final_arch, _ = history.best
    if run_dir is not None:
        finish_nb201_result(run_dir, cfg, final_arch, recorded, time.perf_counter() - start,
                            extra={"evaluated": len(history.archs), "signal_metric": "cifar10-valid-12",
                                   "report_metric": REPORT_METRIC, "stop_reason": "evaluations"})
    return 0


@dataclass
class _Supernet:
    """Everything a supernet search needs, built and validated before the run directory is touched."""

    space: Any
    algo: Any
    loaders: list[Any]
    batch: int  # per process


def _build_supernet(cfg: dict[str, Any], ctx) -> _Supernet:
    from goldnas_fast.data.loader import DeviceLoader
    from goldnas_fast.data.split import seeded_split
    from goldnas_fast.spaces import make_space

    device = ctx.device
    data = _load_data(cfg)
    _seed_everything(cfg["seed"])
    gate = "softmax" if cfg["algo"] == "darts" else "sigmoid"
    try:
        if cfg["space"] == "nb201":
            space = make_space("nb201", gate=gate, C=cfg["C"], N=cfg["N"], backend=cfg["backend"], lean=cfg["lean"])
        else:
            space = make_space("goldnas", C=cfg["C"], layers=cfg["layers"], ops=cfg["ops"], backend=cfg["backend"],
                               lean=cfg["lean"])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    loader_kw = dict(device=device, seed=cfg["seed"], augment=True, drop_last=True, rank=ctx.rank,
                     world_size=ctx.world_size)
    batch = cfg["batch_size"] // ctx.world_size
    if batch < 1 or batch * ctx.world_size != cfg["batch_size"]:
        raise UserError(f"--batch-size {cfg['batch_size']} must be a multiple of the {ctx.world_size} processes")
    if cfg["algo"] == "darts":
        train_idx, valid_idx = seeded_split(data.num_train)
        loaders = [DeviceLoader(data.train_images, data.train_labels, batch, indices=idx, **loader_kw)
                   for idx in (train_idx, valid_idx)]
        what = f"the {min(len(train_idx), len(valid_idx))} images of each half of the train/valid split"
    else:  # one-level: all training images, no split
        loaders = [DeviceLoader(data.train_images, data.train_labels, batch, **loader_kw)]
        what = f"the {data.num_train} training images"
    if any(len(loader) == 0 for loader in loaders):
        raise UserError(f"--batch-size {cfg['batch_size']} is larger than {what}")

    try:
        if cfg["algo"] == "goldnas":
            from goldnas_fast.search.controller import GoldNasConfig
            from goldnas_fast.search.onelevel import GoldNasSearch, OneLevelConfig

            gold = GoldNasConfig(xi_min=cfg["xi_min"], xi_max=cfg["xi_max"], n0=cfg["n0"], lambda0=cfg["lambda0"],
                                 c0=cfg["c0"], mu=cfg["mu"], flops_min=cfg["flops_min"])
            opt = OneLevelConfig(lr_weights=cfg["lr_weights"], lr_alpha=cfg["lr_alpha"], resource=cfg["resource"])
            algo = GoldNasSearch(space, gold, opt, device, ctx=ctx)
        else:
            from goldnas_fast.search.darts import DartsConfig, DartsSearch

            if not cfg["lr_weights"] > 0:
                raise ValueError(f"--lr-weights must be > 0, got {cfg['lr_weights']}")
            algo = DartsSearch(space, DartsConfig(lr_max=cfg["lr_weights"]), device, ctx=ctx)
    except ValueError as exc:  # hyper-parameter checks name the argument
        raise UserError(_as_option(str(exc))) from None
    return _Supernet(space, algo, loaders, batch)


def _as_option(message: str) -> str:
    """``'GoldNasConfig: xi_max must be ...'`` -> ``'--xi-max must be ...'`` (the name the user typed)."""
    _, sep, rest = message.partition(": ")
    text = rest if sep and message.split(":")[0] in ("GoldNasConfig", "OneLevelConfig") else message
    name = text.split(" ", 1)[0]
    if name.isidentifier():
        text = f"--{name.replace('_', '-')}{text[len(name):]}"
    return text


def _resume_state(run_dir: RunDir, algo, out: Path) -> tuple[int, list[dict[str, Any]], float]:
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


def _run_supernet(cfg: dict[str, Any], setup: _Supernet, run_dir: RunDir | None, ctx, out: Path) -> int:
    from goldnas_fast.search.results import finish_goldnas_result, finish_nb201_result

    space, algo, loaders, batch = setup.space, setup.algo, setup.loaders, setup.batch
    start_epoch, history, seconds = _on_main(ctx, lambda: _resume_state(run_dir, algo, out))
    if ctx.world_size > 1 and start_epoch:
        algo.load_state_dict(ctx.broadcast_object(algo.state_dict()))

    stopped = bool(history and history[-1].get("stop"))
    epoch = start_epoch
    while epoch < cfg["epochs"] and not stopped:
        t0 = time.perf_counter()
        for loader in loaders:
            loader.set_epoch(epoch)
        _seed_epoch(cfg["seed"], epoch)
        bar = tqdm(total=len(loaders[0]) * batch * ctx.world_size, desc=f"epoch {epoch + 1}/{cfg['epochs']}",
                   unit="img", leave=False, disable=not ctx.is_main)
        step = lambda info: bar.update(info["n"] * ctx.world_size)  # noqa: E731
        if cfg["algo"] == "goldnas":
            lam = algo.controller.lam
            # Host-side facts only: loss and accuracy would cost a device sync per step; the epoch line has them.
            bar.set_postfix_str(f"lambda {lam:.2e} | surviving {int(algo.controller.alive.sum())} | "
                                f"FLOPs {algo.discrete_flops_m():.1f}M", refresh=False)
            stats = algo.train_epoch(loaders[0], lam, progress=step)
            decision = algo.end_epoch()
            arch = space.architecture()
            record = {"epoch": epoch + 1, **stats, "lambda": lam, "next_lambda": algo.controller.lam,
                      "pruned": int(decision.n_pruned), "surviving": int(algo.controller.alive.sum()),
                      "flops_m": algo.discrete_flops_m(), "arch": arch, "recorded": bool(decision.recorded),
                      "stop": bool(decision.stop), "stop_reason": decision.stop_reason}
            stopped = decision.stop
        else:
            stats = algo.train_epoch(loaders[0], loaders[1], epoch, cfg["epochs"], progress=step)
            arch = space.architecture()
            # DARTS has no plateaus: record the trajectory, each epoch whose argmax architecture is new
            record = {"epoch": epoch + 1, **stats, "arch": arch, "flops_m": space.describe(arch)["flops_m"],
                      "recorded": not history or history[-1]["arch"] != arch, "stop": False, "stop_reason": None}
        bar.close()
        epoch += 1
        seconds += time.perf_counter() - t0
        record["seconds"] = seconds
        if not stopped and epoch >= cfg["epochs"]:
            record["stop_reason"] = "epoch_limit"
        history.append(record)
        if ctx.is_main:
            run_dir.log(record)
            run_dir.save_checkpoint({"config": run_dir.config, "epoch": epoch, "history": history,
                                     "seconds": seconds, "algo": algo.state_dict()})
            tqdm.write(_epoch_line(record))
    if ctx.is_main:
        final_arch = space.architecture()
        extra = {"epochs_run": len(history), "stop_reason": _stop_reason(history)}
        if cfg["space"] == "nb201":
            recorded = [{"epoch": r["epoch"], "arch": r["arch"]} for r in history if r.get("recorded")]
            finish_nb201_result(run_dir, cfg, final_arch, recorded, seconds, extra=extra)
        else:
            finish_goldnas_result(run_dir, cfg, final_arch, history, seconds, extra=extra)
    ctx.barrier()
    ctx.close()
    return 0


def _stop_reason(history: list[dict[str, Any]]) -> str:
    """Why the search ended: the controller's reason (``'one_op_per_edge'``, ``'flops_min'``,
    ``'exhausted'``, ...) or ``'epoch_limit'``."""
    reason = history[-1].get("stop_reason") if history else None
    return reason or "epoch_limit"


def _epoch_line(r: dict[str, Any]) -> str:
    parts = [f"epoch {r['epoch']}", f"loss {r['loss']:.3f}", f"acc {r['accuracy']:.1f}%"]
    if "lambda" in r:
        parts += [f"lambda {r['lambda']:.2e}", f"surviving {r['surviving']}", f"pruned {r['pruned']}"]
    if r.get("flops_m") is not None:
        parts.append(f"FLOPs {r['flops_m']:.1f}M")
    parts.append(f"{r['seconds']:.0f}s")
    if r.get("stop_reason"):
        parts.append(f"stop: {r['stop_reason']}")
    return " | ".join(parts)
