"""``goldnas-fast train``: train one architecture with a documented protocol.

Examples::

    goldnas-fast train --space nb201 --arch 6111 --protocol nb201-12 --data /data/cifar10 \\
        --device cuda --seed 777 --out runs/nb201-6111-12
    goldnas-fast train --space goldnas --genotype found.json --protocol darts --data DATA --device cuda \\
        --seed 0 --out runs/goldnas-a
    goldnas-fast train --from-search runs/search-1 --protocol nb201-200 --split cifar10 --data DATA --out OUT
    goldnas-fast train --space nb201 --arch 0 --protocol nb201-12 --epochs 2 --out /tmp/smoke   # embedded sample
    goldnas-fast train --arch 3,1462,100-110 --protocol nb201-12 --data DATA --device cuda --out runs/many

Writes ``OUT/config.json``, ``OUT/log.jsonl`` (one line per epoch), ``OUT/checkpoint.pt`` (atomic, every
epoch), ``OUT/result.json`` and ``OUT/curves.png``. ``--resume`` continues an interrupted run.
With several architectures, each is its own run in ``OUT/arch-<index>/`` (:mod:`goldnas_fast.train.many`)
and ``OUT/summary.json`` compares them with the NB201 table.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from goldnas_fast.devices import parse_device
from goldnas_fast.errors import UserError

__all__ = ["add_arguments", "run"]

ON_OFF = ("auto", "on", "off")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to train")
    what.add_argument("--space", help="nb201 or goldnas")
    what.add_argument("--arch", help="NB201 arch string |op~0|+|op~0|op~1|+|op~0|op~1|op~2| or index 0..15624; "
                      "or a comma-separated list of them and inclusive index ranges A-B (e.g. 3,1462,100-110), "
                      "trained concurrently, each as its own run in OUT/arch-<index>")
    what.add_argument("--genotype", metavar="FILE.json", help="GOLD-NAS genotype (JSON)")
    what.add_argument("--from-search", metavar="DIR", help="train the final architecture of a search "
                      "(DIR/result.json: final_arch or final_genotype)")
    how = parser.add_argument_group("protocol")
    how.add_argument("--protocol", help="nb201-12, nb201-200 (NAS-Bench-201 training) or darts (GOLD-NAS re-training)")
    how.add_argument("--split", help="cifar10-valid (train 25k, report x-valid) or cifar10 (train 50k, report "
                     "test); default: nb201-* cifar10-valid, darts cifar10")
    how.add_argument("--epochs", type=int, help="override the protocol's epochs (recorded)")
    how.add_argument("--batch-size", type=int, help="override the protocol's batch size (recorded)")
    how.add_argument("--lr", type=float, help="override the protocol's learning rate (recorded)")
    run_ = parser.add_argument_group("run")
    run_.add_argument("--data", help="CIFAR-10: directory of python batches or npz shards, or one .npz file "
                      "(default: the embedded 512+256-image sample, for smoke runs)")
    run_.add_argument("--max-train", type=int, help="use only the first N training images (official order)")
    run_.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    run_.add_argument("--seed", type=int, default=0, help="run seed (weights, order, augmentation, drop-path)")
    run_.add_argument("--out", help="run directory (must be new, or hold this run with --resume; default "
                      "runs/train-SPACE-PROTOCOL-sSEED-TIME)")
    run_.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    run_.add_argument("--channels-last", nargs="?", const="on", default="auto", metavar="auto|on|off",
                      help="NHWC memory format (speed option); auto (default): on for CUDA (except for networks with "
                      "padded nn.AvgPool2d, pytorch#188344), off on the CPU")
    run_.add_argument("--precision", "--amp", dest="amp", default="fp32", metavar="fp32|tf32|bf16",
                      help="fp32 (default until measured on a GPU), tf32 (TF32 matmuls and cuDNN convolutions) "
                      "or bf16 (autocast, float32 master weights); --amp is the old name")
    run_.add_argument("--cuda-graphs", default="auto", metavar="auto|on|off",
                      help="replay each training step from a captured CUDA graph; auto (default): on for CUDA")
    run_.add_argument("--workers", type=int, metavar="K", help="with several --arch: how many train at once (processes; "
                      "default: all of them on CUDA up to 8, the CPU cores on the CPU)")
    run_.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and the last)")
    run_.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    run_.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: stop as if interrupted


def _positive(value: int | None, name: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")


def _on(value: str | bool, device: torch.device, name: str, needs_cuda: bool) -> bool:
    """auto|on|off -> bool: auto is on for CUDA; ``needs_cuda`` refuses on elsewhere."""
    if isinstance(value, bool):  # already resolved
        return value
    if value not in ON_OFF:
        raise UserError(f"{name} must be one of {', '.join(ON_OFF)}, got {value!r}")
    if needs_cuda and value == "on" and device.type != "cuda":
        raise UserError(f"{name} on needs --device cuda")
    return value == "on" or (value == "auto" and device.type == "cuda")


def _channels_last(value: str | bool, device: torch.device, target: Any, protocol: Any) -> bool:
    """--channels-last resolved; auto stays NCHW for a network with padded nn.AvgPool2d (see padded_avg_pool)."""
    from goldnas_fast.train.trainer import padded_avg_pool

    on = _on(value, device, "--channels-last", needs_cuda=False)
    if value == "auto" and on:
        with torch.device("meta"):  # structure only: no memory, no draw from the RNG
            model = target.build(protocol.init_channels, auxiliary=protocol.aux_weight > 0)
        if padded_avg_pool(model):
            print("note: --channels-last auto: NCHW, because this network's nn.AvgPool2d(padding=1) has a wrong "
                  "channels_last backward on CUDA in some PyTorch versions (pytorch/pytorch#188344)", file=sys.stderr)
            return False
    return on


def run(args: argparse.Namespace) -> int:
    from goldnas_fast.train.protocols import get_protocol
    from goldnas_fast.train.targets import resolve_targets
    from goldnas_fast.precision import check_precision

    # ---- validate everything before anything is written
    if args.resume and not args.out:
        raise UserError("--resume needs --out naming the run to continue")
    if args.protocol is None:
        raise UserError("--protocol is required: nb201-12, nb201-200 or darts")
    protocol = get_protocol(args.protocol)
    targets = resolve_targets(args.space, args.arch, args.genotype, args.from_search)
    target = targets[0]
    if target.space != protocol.space:
        raise UserError(f"--protocol {protocol.name} trains {protocol.space} architectures, not {target.space} "
                        f"(use {'nb201-12 or nb201-200' if target.space == 'nb201' else 'darts'})")
    protocol = protocol.with_overrides(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    split = args.split or protocol.default_split
    check_precision(args.amp, "--precision (--amp)")
    if args.seed is None or args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    _positive(args.eval_every, "--eval-every", allow_none=False)
    _positive(args.max_train, "--max-train")
    _positive(args.stop_after, "--stop-after")
    _positive(args.workers, "--workers")
    if not args.out:
        from goldnas_fast.outdirs import default_out

        args.out = str(default_out("train", target.space, protocol.name, f"s{args.seed}"))
    device = parse_device(args.device)
    _on(args.channels_last, device, "--channels-last", needs_cuda=False)
    args.cuda_graphs = _on(args.cuda_graphs, device, "--cuda-graphs", needs_cuda=True)
    if len(targets) > 1:
        from goldnas_fast.train.many import run_many

        _check_list(args, protocol, targets, split, device)
        return run_many(args, targets)
    args.channels_last = _channels_last(args.channels_last, device, target, protocol)
    inputs, source = _load_inputs(args, split, protocol, device, channels_last=args.channels_last)
    return _train(args, protocol, target, inputs, source, split, device)


def _check_list(args: argparse.Namespace, protocol: Any, targets: list[Any], split: str,
                device: torch.device) -> None:
    """What each worker of an --arch list would refuse only after OUT exists: bad --data/--split/--max-train,
    and, with --resume, a run directory that holds the architecture under other options."""
    from goldnas_fast.runs import RunDir
    from goldnas_fast.train.many import arch_dir

    _, source = _load_inputs(args, split, protocol, torch.device("cpu"), channels_last=False)
    if args.resume:
        for t in targets:
            channels_last = _channels_last(args.channels_last, device, t, protocol)
            config = _run_config(args, protocol, t, split, source, device, channels_last)
            RunDir.check(arch_dir(args.out, t.arch_index), "train", config, resume=True)


def _load_inputs(args: argparse.Namespace, split: str, protocol: Any, device: torch.device,
                 channels_last: bool) -> tuple[Any, str]:
    from goldnas_fast.data.open import open_cifar10
    from goldnas_fast.train.inputs import SPLITS, make_inputs

    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    arrays = open_cifar10(args.data, max_train=args.max_train)
    inputs = make_inputs(arrays, split, protocol, device, seed=args.seed, embedded_sample=args.data is None,
                         channels_last=channels_last)
    return inputs, arrays.source


def _run_config(args: argparse.Namespace, protocol: Any, target: Any, split: str, source: str,
                device: torch.device, channels_last: bool) -> dict[str, Any]:
    """What ``config.json`` records: a resumed run must match it."""
    return {**target.record, "space": target.space, "protocol": protocol.to_dict(), "split": split,
            "data": source, "max_train": args.max_train, "seed": args.seed, "device": device.type,
            "amp": args.amp, "channels_last": bool(channels_last), "eval_every": args.eval_every}


def _train(args: argparse.Namespace, protocol: Any, target: Any, inputs: Any, source: str, split: str,
           device: torch.device) -> int:
    from goldnas_fast.data.loader import epoch_seed
    from goldnas_fast.runs import RunDir, resume_note
    from goldnas_fast.train.report import finish
    from goldnas_fast.train.trainer import STREAM_INIT, TrainOptions, Trainer

    config = _run_config(args, protocol, target, split, source, device, args.channels_last)
    torch.manual_seed(epoch_seed(args.seed, 0, STREAM_INIT))
    model = target.build(protocol.init_channels, auxiliary=protocol.aux_weight > 0).to(device)
    run = RunDir(args.out, "train", config, resume=args.resume)  # refuses a directory holding another run
    options = TrainOptions(seed=args.seed, device=device, channels_last=args.channels_last, amp=args.amp,
                           progress=not args.no_progress, stop_after=args.stop_after, eval_every=args.eval_every,
                           cuda_graphs=args.cuda_graphs, cudnn_benchmark=device.type == "cuda")
    trainer = Trainer(model, protocol, run, inputs.train.epoch_batches, inputs.train.num_samples,
                      {name: (lambda ld=ld: iter(ld)) for name, ld in inputs.eval_sets.items()}, options)
    if args.resume:
        trainer.resume()
        done = trainer.epochs_done
        print(resume_note(run.path, done, protocol.epochs, finished=done >= protocol.epochs), file=sys.stderr)
    t0 = time.perf_counter()
    trainer.fit()
    return finish(trainer, target, inputs.info, config, wall_seconds=time.perf_counter() - t0)
