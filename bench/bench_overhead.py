"""Per-call cost of the fused ops on tiny tensors, beside ``torch.add`` and the eager references.

Usage: python bench/bench_overhead.py [--device cpu|cuda] [--quick] [--threads 1] [--json PATH]

On tiny tensors the arithmetic is negligible, so microseconds per call measure what a call costs on the
host: Python wrapper and argument checks, dispatch, autograd bookkeeping, allocation and kernel launches.
Each function runs in blocks of many calls with one device synchronization per block (the GPU queue runs
ahead of the host), the functions interleaved round by round (``compare_samples``); the table gives the
median microseconds per call and the ratio to ``torch.add`` in the same variant:

* ``fwd``: forward only, inputs that do not require grad;
* ``fwd+bwd``: inputs that require grad, forward plus ``torch.autograd.grad``.

The issue's target (GPU): per-call overhead of ``mixed_sum`` and ``node_sum`` at most 3x ``torch.add``'s.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compare_samples, environment, markdown_table, median_ms, write_json  # noqa: E402

from goldnas_fast.ops import Kind, mixed_sum, node_sum, node_sum_ref  # noqa: E402

SHAPE = (2, 4, 4, 4)  # tiny: every op is host-bound on any device


def eager_mixed(xs, w):
    return sum(wk * x for wk, x in zip(w, xs))


def cases(device: str, grad: bool) -> dict[str, tuple]:
    """``name -> (fn, args, differentiable inputs)`` for one variant."""
    gen = torch.Generator().manual_seed(0)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device).requires_grad_(grad)

    a, b = leaf(*SHAPE), leaf(*SHAPE)
    xs = [leaf(*SHAPE), leaf(*SHAPE)]
    w = leaf(2)
    x, conv = leaf(*SHAPE), leaf(*SHAPE)
    node = ([x, x, conv], [Kind.IDENTITY, Kind.AVG_POOL_3X3, Kind.IDENTITY], [0, 1, 2])
    wn = leaf(3)
    return {
        "torch.add": (torch.add, (a, b), [a, b]),
        "mixed_sum (K=2)": (mixed_sum, (xs, w), [*xs, w]),
        "mixed_sum eager sum(w*x)": (eager_mixed, (xs, w), [*xs, w]),
        "node_sum (id+avg+id)": (node_sum, (*node, wn), [x, conv, wn]),
        "node_sum_ref eager": (node_sum_ref, (*node, wn), [x, conv, wn]),
    }


def make_call(fn, fn_args, inputs, grad: bool, g: torch.Tensor):
    if not grad:
        return lambda: fn(*fn_args)
    return lambda: torch.autograd.grad(fn(*fn_args), inputs, g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="shorter timing")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds per variant")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (CPU; default 1: on tiny tensors more threads only add "
                             "OpenMP wake-ups, 16 ms per avg_pool2d call with 2 threads on a loaded 2-core VM)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and the environment here")
    args = parser.parse_args()
    device = args.device
    torch.set_num_threads(args.threads)
    run_time = 1.0 if args.quick else 3.0  # per variant, shared by the interleaved functions
    g = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)).to(device)
    records, table = [], []
    for variant, grad in (("fwd", False), ("fwd+bwd", True)):
        fns = {name: make_call(fn, fn_args, inputs, grad, g)
               for name, (fn, fn_args, inputs) in cases(device, grad).items()}
        times = median_ms(compare_samples(fns, device, run_time, args.rounds))
        base = times["torch.add"]
        for name, ms in times.items():
            records.append({"op": name, "variant": variant, "us_per_call": 1e3 * ms, "over_torch_add": ms / base})
            table.append([name, variant, 1e3 * ms, ms / base])
        write_json(args.json, "overhead", device, args, records, shape=list(SHAPE))
    print(f"per-call cost on {SHAPE} float32 tensors | {environment(device)}\n")
    print(markdown_table(["op", "variant", "us per call", "vs torch.add"], table))


if __name__ == "__main__":
    main()
