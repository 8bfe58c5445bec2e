"""Forward+backward of one ``node_sum`` node vs ``node_sum_ref`` eager vs ``torch.compile(node_sum_ref)``.

Usage: python bench/bench_node_sum.py [--device cpu|cuda] [--dtype float32] [--quick] [--no-compile] [--json PATH]
A node here has a skip entry and a pooling entry on the same source tensor plus two precomputed
convolution outputs (IDENTITY entries), each with its own gate. Besides time, the table gives the bytes
saved for backward (torch.autograd.graph.saved_tensors_hooks, each storage counted once) and how many of
them are not node inputs, i.e. activations kept only for this node's backward.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compare_ms, environment, keep_freed_memory, markdown_table, write_json  # noqa: E402

from goldnas_fast.ops import Kind, node_sum, node_sum_ref  # noqa: E402


def make_node(shape, pool: Kind, dtype, device):
    gen = torch.Generator().manual_seed(0)
    x, conv_a, conv_b = (torch.randn(shape, generator=gen).to(device, dtype).requires_grad_() for _ in range(3))
    tensors = [x, x, conv_a, conv_b]
    kinds = [Kind.IDENTITY, pool, Kind.IDENTITY, Kind.IDENTITY]
    gates = [0, 1, 2, 3]
    w = torch.rand(4, generator=gen).to(device).requires_grad_()
    g = torch.randn(shape, generator=gen).to(device, dtype)
    return [x, conv_a, conv_b], tensors, kinds, gates, w, g


def step(fn, leaves, tensors, kinds, gates, w, g):
    out = fn(tensors, kinds, gates, w)
    return torch.autograd.grad(out, [*leaves, w], g)


def saved_bytes(fn, leaves, tensors, kinds, gates, w) -> tuple[int, int]:
    """Bytes saved for backward (distinct storages) and the part that is not a node input or the gates."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(tensors, kinds, gates, w)
    inputs = {t.untyped_storage().data_ptr() for t in [*leaves, w]}
    return sum(seen.values()), sum(b for p, b in seen.items() if p not in inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"])
    parser.add_argument("--quick", action="store_true", help="one case and shorter timing")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--fresh-pages", action="store_true",
                        help="leave glibc malloc as it is (freed memory trimmed, page faults on fresh pages timed)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and the environment here")
    args = parser.parse_args()
    recycled = not args.fresh_pages and keep_freed_memory()
    device, dtype = args.device, getattr(torch, args.dtype)
    run_time = 0.6 if args.quick else 3.0  # per case, shared by the interleaved modes
    cases = [((64, 16, 32, 32), Kind.AVG_POOL_3X3), ((64, 16, 32, 32), Kind.MAX_POOL_3X3),
             ((64, 64, 16, 16), Kind.AVG_POOL_3X3)]
    if args.quick:
        cases = cases[:1]
    rows, records = [], []
    for shape, pool in cases:
        torch._dynamo.reset()  # one specialised graph per case, never the recompile limit's eager fallback
        compiled = None if args.no_compile else torch.compile(node_sum_ref, dynamic=False)
        leaves, tensors, kinds, gates, w, g = make_node(shape, pool, dtype, device)
        # correctness first: the fused result must match the reference before it is timed
        for a, b in zip(step(node_sum, leaves, tensors, kinds, gates, w, g),
                        step(node_sum_ref, leaves, tensors, kinds, gates, w, g)):
            torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2 * b.abs().max().item())
        fns = {"fused": lambda: step(node_sum, leaves, tensors, kinds, gates, w, g),
               "eager": lambda: step(node_sum_ref, leaves, tensors, kinds, gates, w, g)}
        if compiled is not None:
            fns["compile"] = lambda: step(compiled, leaves, tensors, kinds, gates, w, g)
        times = compare_ms(fns, device, run_time)
        t_fused, t_eager, t_comp = times["fused"], times["eager"], times.get("compile", float("nan"))
        fused_saved, fused_extra = saved_bytes(node_sum, leaves, tensors, kinds, gates, w)
        ref_saved, ref_extra = saved_bytes(node_sum_ref, leaves, tensors, kinds, gates, w)
        mib = 2.0**20
        rows.append([f"{tuple(shape)}", f"id+{pool.name.lower()}+2 conv", t_fused, t_eager, t_comp,
                     t_eager / t_fused, t_comp / t_fused, fused_saved / mib, ref_saved / mib,
                     fused_extra / mib, ref_extra / mib])
        records.append({"shape": list(shape), "entries": rows[-1][1], "fused_ms": t_fused, "eager_ms": t_eager,
                        "compile_ms": t_comp, "eager_over_fused": t_eager / t_fused,
                        "compile_over_fused": t_comp / t_fused, "fused_saved_mib": fused_saved / mib,
                        "ref_saved_mib": ref_saved / mib, "fused_extra_mib": fused_extra / mib,
                        "ref_extra_mib": ref_extra / mib})
        write_json(args.json, "node_sum", device, args, records)
    header = ["shape", "entries", "fused ms", "eager ms", "compile ms", "eager/fused", "compile/fused",
              "fused saved MiB", "ref saved MiB", "fused extra MiB", "ref extra MiB"]
    malloc = "glibc malloc keeps freed memory" if recycled else "malloc as is"
    print(f"node_sum forward+backward, {args.dtype}, {malloc} | {environment(device)}\n")
    print(markdown_table(header, rows))
    print("\nsaved MiB: distinct storages saved for backward; extra: the part that is not a node input or "
          "the gate vector (activations kept only for this node's backward).")


if __name__ == "__main__":
    main()
