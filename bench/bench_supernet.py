"""One NAS-Bench-201 supernet training step: fused vs reference vs torch.compile(reference), by survival rate.

Usage: python bench/bench_supernet.py [--device cpu|cuda] [--batch 64] [--C 16] [--N 5] [--steps 5]
                                      [--fractions 1 0.5 0.25] [--modes reference fused compile] [--json OUT]
                                      [--channels-last]

A mode is ``reference``, ``fused`` or ``compile``, optionally with ``+lean`` (per-node recomputation) and
a layout: ``@cl`` puts network and input in channels_last (as a user would), ``@nchw`` keeps the fused
cells in the input's layout (``memory_format='preserve'``; by default they run CPU float32 in
channels_last); ``--channels-last`` puts every mode in channels_last. Speed-ups and memory ratios are
relative to the ``reference`` row (NCHW unless ``--channels-last``).

One step = forward (sigmoid gates, GOLD-NAS on NB201), cross-entropy, backward, then SGD steps (momentum
0.9) for the weights and for the gates, ``zero_grad(set_to_none=True)``. Every configuration builds the
same network (seed 0) with a random pruning mask (fixed seed) that keeps 100 %, 50 % or 25 % of the 24
(edge, op) pairs, at least one per node.

* time: median and minimum of ``--steps`` timed steps after ``--warmup`` untimed ones (CUDA synchronized),
  the modes' steps interleaved so that load from other processes hits all of them alike; the first call
  (compilation in the compile mode) is timed separately.
* memory: bytes of the distinct non-parameter storages autograd saves for backward in one forward
  (``torch.autograd.graph.saved_tensors_hooks``, device independent); on CUDA also
  ``torch.cuda.max_memory_allocated`` over one step. In the ``+lean`` modes (per-node activation
  checkpointing) this counts what is kept between forward and backward, not the transient recomputation.
* ``--profile``: a ``torch.profiler`` table (top ops by self time) of one step per mode at 100 %.

The issue's targets: on CPU fused >= 1.5x faster than reference and <= 0.5x its memory; on GPU >= 3x and
<= 0.3x.
"""
from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, markdown_table, sync  # noqa: E402

MODES = tuple(f"{base}{layout}" for layout in ("", "@cl", "@nchw")
              for base in ("reference", "fused", "compile", "reference+lean", "fused+lean"))
MiB = 2.0 ** 20


def fused_available() -> bool:
    import goldnas_fast.ops

    return callable(getattr(goldnas_fast.ops, "node_sum", None))


def survival_mask(pairs: list[tuple[int, str]], fraction: float, seed: int) -> list[bool]:
    """``round(fraction * P)`` random survivors (at least one per node), fixed by ``seed``."""
    from goldnas_fast.nb201.arch import EDGES

    rng = random.Random(seed)
    keep = max(3, round(fraction * len(pairs)))
    chosen = set()
    for node in (1, 2, 3):  # one survivor per node first
        chosen.add(rng.choice([p for p, (e, _) in enumerate(pairs) if EDGES[e][0] == node]))
    rest = [p for p in range(len(pairs)) if p not in chosen]
    rng.shuffle(rest)
    chosen.update(rest[:keep - len(chosen)])
    return [p in chosen for p in range(len(pairs))]


def build(mode: str, fraction: float, args: argparse.Namespace):
    from goldnas_fast.nb201.search_network import SearchNetwork

    torch.manual_seed(0)
    mode, _, layout = mode.partition("@")
    backend = "fused" if mode.startswith("fused") else "reference"
    net = SearchNetwork(C=args.C, N=args.N, gate="sigmoid", backend=backend, lean=mode.endswith("+lean"))
    net.set_alive(survival_mask(net.pairs, fraction, args.seed))
    if layout == "nchw":
        net.memory_format = "preserve"
    fmt = torch.channels_last if args.channels_last or layout == "cl" else torch.contiguous_format
    net = net.to(args.device, memory_format=fmt).train()
    opt_w = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4)
    opt_a = torch.optim.SGD(net.arch_parameters(), lr=0.1, momentum=0.9)
    module = torch.compile(net) if mode == "compile" else net
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen).to(args.device, memory_format=fmt)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(args.device)

    def step() -> None:
        loss = F.cross_entropy(module(x), y)
        loss.backward()
        opt_a.step()
        opt_w.step()
        opt_w.zero_grad(set_to_none=True)
        opt_a.zero_grad(set_to_none=True)

    def saved_bytes() -> int:
        params = {p.untyped_storage().data_ptr() for p in net.parameters()}
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                saved[s.data_ptr()] = max(saved.get(s.data_ptr(), 0), s.nbytes())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = F.cross_entropy(module(x), y)
        loss.backward()
        opt_w.zero_grad(set_to_none=True)
        opt_a.zero_grad(set_to_none=True)
        return sum(saved.values())

    return net, step, saved_bytes


def _error(exc: Exception, limit: int = 500) -> str:
    return f"{type(exc).__name__}: {exc}"[:limit]


def measure_fraction(fraction: float, args: argparse.Namespace) -> list[dict]:
    """All modes at one survival rate; their timed steps are interleaved (mode A, B, C, A, B, C, ...) so that
    load from other processes on a shared machine affects every mode alike."""
    cuda = args.device.startswith("cuda")
    rows: dict[str, dict] = {}
    runs: dict[str, tuple] = {}
    for mode in args.modes:
        row = rows[mode] = {"mode": mode, "fraction": fraction}
        if mode.startswith("fused") and not fused_available():
            row["error"] = "goldnas_fast.ops.node_sum not available"
            continue
        try:
            net, step, saved_bytes = build(mode, fraction, args)
            row["alive_pairs"] = sum(net.alive)
            sync(args.device)
            t0 = time.perf_counter()
            step()  # first call: compilation for 'compile', lazy allocations otherwise
            sync(args.device)
            row["first_step_s"] = time.perf_counter() - t0
            for _ in range(args.warmup):
                step()
            runs[mode] = (net, step, saved_bytes)
        except Exception as exc:  # noqa: BLE001  (a failing mode, e.g. compile, is reported as such)
            row["error"] = _error(exc)
    times: dict[str, list[float]] = {mode: [] for mode in runs}
    for _ in range(args.steps):
        for mode, (_, step, _) in list(runs.items()):
            try:
                sync(args.device)
                t0 = time.perf_counter()
                step()
                sync(args.device)
                times[mode].append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001
                rows[mode]["error"] = _error(exc)
                del runs[mode]
    for mode, (_, step, saved_bytes) in runs.items():
        row = rows[mode]
        row["step_ms"] = 1e3 * statistics.median(times[mode])
        row["step_ms_min"] = 1e3 * min(times[mode])
        try:
            row["saved_mib"] = saved_bytes() / MiB
        except Exception as exc:  # noqa: BLE001  (reported, not hidden)
            row["saved_mib"] = None
            row["saved_error"] = _error(exc, 300)
        if args.profile and fraction == 1.0:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=acts) as prof:
                step()
                sync(args.device)
            key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
            row["profile"] = prof.key_averages().table(sort_by=key, row_limit=15)
    if cuda:  # one mode's network at a time on the device, so that each peak is its own
        for mode in list(runs):
            _, step, _ = runs[mode]
            gc.collect()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            torch.cuda.synchronize()
            rows[mode]["peak_mib"] = torch.cuda.max_memory_allocated() / MiB
            rows[mode]["peak_over_resident_mib"] = (torch.cuda.max_memory_allocated() - base) / MiB
    runs.clear()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return [rows[mode] for mode in args.modes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first one")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--modes", nargs="+", default=["reference", "fused", "compile"], choices=MODES)
    parser.add_argument("--seed", type=int, default=0, help="seed of the pruning masks")
    parser.add_argument("--channels-last", action="store_true",
                        help="network and input in channels_last (NHWC) memory format, for every mode")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table per mode at 100%%")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and the environment here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    env = environment(args.device)
    layout = "channels_last" if args.channels_last else "NCHW"
    print(f"NB201 supernet step, C = {args.C}, N = {args.N}, batch {args.batch}, 32x32, {layout}, "
          f"sigmoid gates | {env}",
          flush=True)
    rows = []
    for fraction in args.fractions:
        for row in measure_fraction(fraction, args):
            profile = row.pop("profile", None)
            print(json.dumps(row), flush=True)
            if profile:
                print(f"profile: {row['mode']}, {fraction:.0%} surviving\n{profile}", flush=True)
            rows.append(row)

    mem_key = "peak_mib" if cuda else "saved_mib"
    header = ["mode", "surviving pairs", "step (ms, median)", "step (ms, min)", "speed-up vs ref (median)",
              "first step (s)", "saved fwd (MiB)"]
    header += (["peak alloc (MiB)"] if cuda else []) + [f"{'peak' if cuda else 'saved'} vs ref", "note"]
    ref = {r["fraction"]: r for r in rows if r["mode"] == "reference" and "step_ms" in r}
    table = []
    for r in rows:
        if "step_ms" not in r:
            table.append([r["mode"], f"{r['fraction']:.0%}"] + ["-"] * (len(header) - 3) + [r.get("error", "")[:80]])
            continue
        base = ref.get(r["fraction"])
        speedup = base["step_ms"] / r["step_ms"] if base else float("nan")
        mem, base_mem = r.get(mem_key), (base or {}).get(mem_key)
        cells = [r["mode"], f"{r['fraction']:.0%} ({r['alive_pairs']})", r["step_ms"], r["step_ms_min"], speedup,
                 r["first_step_s"],
                 "n/a" if r["saved_mib"] is None else r["saved_mib"]]
        cells += ([r["peak_mib"]] if cuda else [])
        cells += [mem / base_mem if mem is not None and base_mem else float("nan"), r.get("saved_error", "")[:80]]
        table.append(cells)
    print(markdown_table(header, table))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
