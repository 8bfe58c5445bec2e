"""Forward+backward of ``mixed_sum`` vs eager ``sum(w * x)`` vs ``torch.compile`` of the same function.

Usage: python bench/bench_mixed_sum.py [--device cpu|cuda] [--quick] [--big] [--rounds 15] [--fresh-pages]
                                      [--json PATH]
On CUDA the table also gives GB/s and the fraction of a device-to-device copy measured in the same run.
``--big`` adds the (256, 64, 64, 64) K = 5 case (the bandwidth target's shape) to ``--quick``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (compare_samples, environment, keep_freed_memory, markdown_table, median_ms,  # noqa: E402
                    paired_ratio, time_ms, write_json)

from goldnas_fast.ops import mixed_sum, mixed_sum_ref  # noqa: E402


def eager(xs, w):
    return sum(wk * x for wk, x in zip(w, xs))


def step(fn, xs, w, g):
    out = fn(xs, w)
    return torch.autograd.grad(out, [*xs, w], g)


def copy_gbps(numel: int, dtype: torch.dtype, device: str) -> float:
    src = torch.empty(numel, dtype=dtype, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device)
    return 2 * numel * src.element_size() / ms / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and shorter timing")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--big", action="store_true", help="with --quick: add the (256, 64, 64, 64) K = 5 case")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds per case")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and the environment here")
    parser.add_argument("--fresh-pages", action="store_true",
                        help="leave glibc malloc as it is (freed memory trimmed, page faults on fresh pages timed)")
    args = parser.parse_args()
    recycled = not args.fresh_pages and keep_freed_memory()
    device, dtype = args.device, getattr(torch, args.dtype)
    run_time = 0.6 if args.quick else 3.0  # per case, shared by the interleaved modes
    shapes = [(64, 16, 32, 32), (64, 32, 32, 32), (64, 64, 32, 32)]
    ks = [2, 5, 8]
    cases = [(s, k) for s in shapes for k in ks] + [((256, 64, 64, 64), 5)]
    if args.quick:
        cases = [((64, 16, 32, 32), 5), ((64, 64, 32, 32), 8)] + ([((256, 64, 64, 64), 5)] if args.big else [])
    rows, records = [], []
    for shape, k in cases:
        torch._dynamo.reset()  # one specialised graph per case, never the recompile limit's eager fallback
        compiled = None if args.no_compile else torch.compile(eager, dynamic=False)
        gen = torch.Generator().manual_seed(0)
        xs = [torch.randn(shape, generator=gen).to(device, dtype).requires_grad_() for _ in range(k)]
        w = torch.rand(k, generator=gen).to(device).requires_grad_()
        g = torch.randn(shape, generator=gen).to(device, dtype)
        # correctness first: the fused result must match the reference before it is timed
        for a, b in zip(step(mixed_sum, xs, w, g), step(mixed_sum_ref, xs, w, g)):
            torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2 * b.abs().max().item())
        fns = {"fused": lambda: step(mixed_sum, xs, w, g), "eager": lambda: step(eager, xs, w, g)}
        if compiled is not None:
            fns["compile"] = lambda: step(compiled, xs, w, g)
        samples = compare_samples(fns, device, run_time, args.rounds)
        times = median_ms(samples)
        t_fused, t_eager, t_comp = times["fused"], times["eager"], times.get("compile", float("nan"))
        comp_ratio, comp_q1, comp_q3 = paired_ratio(samples, "compile", "fused")
        n = xs[0].numel()
        moved = (3 * k + 2) * n * xs[0].element_size()  # fwd: K reads + 1 write; bwd: K+1 reads + K writes
        row = [f"{tuple(shape)}", k, t_fused, t_eager, t_comp, paired_ratio(samples, "eager", "fused")[0], comp_ratio,
               f"{comp_q1:.2f}-{comp_q3:.2f}"]
        record = {"shape": list(shape), "K": k, "fused_ms": t_fused, "eager_ms": t_eager, "compile_ms": t_comp,
                  "eager_over_fused": row[5], "compile_over_fused": comp_ratio,
                  "compile_over_fused_iqr": [comp_q1, comp_q3], "moved_bytes": moved}
        if device.startswith("cuda"):
            gbps = moved / t_fused / 1e6
            copy = copy_gbps(n * k, dtype, device)
            row += [gbps, gbps / copy]
            record.update(fused_gbps=gbps, copy_gbps=copy, fraction_of_copy=gbps / copy)
        rows.append(row)
        records.append(record)
        write_json(args.json, "mixed_sum", device, args, records)
        print(f"done: {tuple(shape)} K={k}", file=sys.stderr, flush=True)
    # Ratios are medians over rounds of the two modes' times within one round (paired), which cancels
    # load that drifts between rounds; the quartiles show how much the rounds disagree.
    header = ["shape", "K", "fused ms", "eager ms", "compile ms", "eager/fused", "compile/fused",
              "compile/fused IQR"]
    if device.startswith("cuda"):
        header += ["fused GB/s", "fraction of copy"]
    malloc = "glibc malloc keeps freed memory" if recycled else "malloc as is"
    print(f"mixed_sum forward+backward, {args.dtype}, {malloc} | {environment(device)}\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
