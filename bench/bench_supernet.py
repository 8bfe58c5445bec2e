"""One NAS-Bench-201 supernet training step: fused vs reference vs torch.compile(reference), by survival rate.

Usage: python bench/bench_supernet.py [--device cpu|cuda] [--batch 64 [256 ...]] [--C 16] [--N 5] [--steps 5]
                                      [--fractions 1 0.5 0.25] [--modes reference fused compile] [--json OUT]
                                      [--channels-last] [--gate sigmoid|softmax] [--compile-cap S] [--mode-cap S]

A mode is ``reference``, ``fused`` or ``compile``, optionally with ``+lean`` (per-node recomputation) and
a layout: ``@cl`` puts network and input in channels_last (as a user would), ``@nchw`` keeps the fused
cells in the input's layout (``memory_format='preserve'``; by default they run CPU float32 in
channels_last); ``--channels-last`` puts every mode in channels_last. Speed-ups and memory ratios are
relative to the ``reference`` row (NCHW unless ``--channels-last``). CUDA only: ``reference+graph`` and
``fused+graph`` replay the whole step as one CUDA graph (``goldnas_fast.nn.graphed.GraphedTrainStep``).
``autodl`` is the official AutoDL code's DARTS supernet (``xautodl`` ``TinyNetworkDarts``, softmax over
all 5 operations, all pairs only), trained by the same step, when ``xautodl`` is importable.

``torch.compile`` may take minutes or hang. On CUDA (``--compile-isolation auto``) each compile mode runs
in a child process that is killed after ``--compile-cap`` seconds; the row then says it was skipped, and
later batches skip it too. ``--mode-cap`` stops timing a mode once its timed steps took that long (the
row keeps the steps timed so far). Progress lines and each (batch, fraction)'s rows are printed as they
come, and ``--json`` is rewritten after each of them.

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

The targets: on CPU fused >= 1.5x faster than reference and <= 0.5x its memory; on GPU (issue 16) >= 4x
and <= 0.25x, and at most 0.25x the step time of the official AutoDL code.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, markdown_table, run_capped, sync, write_json  # noqa: E402

MODES = tuple(f"{base}{layout}" for layout in ("", "@cl", "@nchw")
              for base in ("reference", "fused", "compile", "reference+lean", "fused+lean", "reference+graph",
                           "fused+graph")) + ("autodl", "autodl@cl")
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


@dataclass
class Built:
    """One mode, ready to time: ``step()`` trains one batch; ``untimed`` calls precede the timed ones."""

    net: torch.nn.Module
    step: object
    saved_bytes: object
    alive_pairs: int
    untimed: int = 0
    graphed: bool = False


def _autodl_network(args: argparse.Namespace) -> torch.nn.Module:
    """The official AutoDL DARTS supernet for NAS-Bench-201 (``xautodl==1.0.0``), logits only."""
    try:
        from xautodl.models.cell_operations import NAS_BENCH_201
        from xautodl.models.cell_searchs.search_model_darts import TinyNetworkDarts
    except ImportError as exc:
        raise RuntimeError(f"xautodl is not importable ({exc}): pip install --no-deps xautodl==1.0.0, or put its "
                           "wheel in .whl/ for scripts/gpu_check.sh") from exc

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = TinyNetworkDarts(args.C, args.N, 4, 10, NAS_BENCH_201, False, False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)[1]

        def weight_parameters(self) -> list:
            return list(self.inner.get_weights())

        def arch_parameters(self) -> list:
            return list(self.inner.get_alphas())

    net = Logits()
    net.pairs = [None] * (6 * len(NAS_BENCH_201))
    return net


def build(mode: str, fraction: float, batch: int, args: argparse.Namespace) -> Built:
    from goldnas_fast.nb201.search_network import SearchNetwork

    torch.manual_seed(0)
    mode, _, layout = mode.partition("@")
    cuda = args.device.startswith("cuda")
    if mode.endswith("+graph") and not cuda:
        raise RuntimeError(f"{mode} replays a CUDA graph and needs --device cuda")
    if mode == "autodl":
        if fraction != 1.0:
            raise RuntimeError("autodl: the official supernet is measured with all pairs alive only")
        net = _autodl_network(args)
        alive = len(net.pairs)
    else:
        backend = "fused" if mode.startswith("fused") else "reference"
        net = SearchNetwork(C=args.C, N=args.N, gate=args.gate, backend=backend, lean="+lean" in mode)
        net.set_alive(survival_mask(net.pairs, fraction, args.seed))
        alive = sum(net.alive)
    if layout == "nchw":
        net.memory_format = "preserve"
    fmt = torch.channels_last if args.channels_last or layout == "cl" else torch.contiguous_format
    net = net.to(args.device, memory_format=fmt).train()
    opt_w = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4)
    opt_a = torch.optim.SGD(net.arch_parameters(), lr=0.1, momentum=0.9)
    module = torch.compile(net) if mode == "compile" else net
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(args.device, memory_format=fmt)
    y = torch.randint(0, 10, (batch,), generator=gen).to(args.device)

    def eager_step() -> None:
        loss = F.cross_entropy(module(x), y)
        loss.backward()
        opt_a.step()
        opt_w.step()
        opt_w.zero_grad(set_to_none=True)
        opt_a.zero_grad(set_to_none=True)

    step, untimed, graphed = eager_step, args.warmup, False
    if mode.endswith("+graph"):
        from goldnas_fast.nn.graphed import GraphedTrainStep

        replay = GraphedTrainStep(lambda xb, yb: F.cross_entropy(module(xb), yb), [opt_a, opt_w])
        step = functools.partial(replay, x, y)
        # the first call and max(warmup, 3) more: eager warm-ups, then the capture; timed calls only replay
        untimed, graphed = max(args.warmup, replay.warmup), True

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

    return Built(net, step, saved_bytes, alive, untimed, graphed)


def _error(exc: Exception, limit: int = 500) -> str:
    return f"{type(exc).__name__}: {exc}"[:limit]


def _isolated(mode: str, args: argparse.Namespace) -> bool:
    """Whether ``mode`` runs in a child process with a time cap (compile modes on CUDA by default)."""
    if not mode.startswith("compile") or args.child:
        return False
    return args.compile_isolation == "process" or (args.compile_isolation == "auto"
                                                   and args.device.startswith("cuda"))


def run_isolated(mode: str, fraction: float, batch: int, args: argparse.Namespace) -> dict:
    """Measures one mode in a child process killed (with its compile workers) after ``--compile-cap`` s."""
    row = {"mode": mode, "fraction": fraction, "batch": batch, "isolated": True}
    if args.compile_timed_out:
        row["error"] = f"skipped: torch.compile did not finish within {args.compile_cap:g} s at an earlier batch"
        return row
    cap = args.compile_cap
    if args.compile_total is not None:
        cap = min(cap, args.compile_total - args.compile_spent)
        if cap < min(10.0, args.compile_cap):  # too little left to compile anything: say so, do not start
            row["error"] = f"skipped: the --compile-total {args.compile_total:g} s of compile modes is spent"
            return row
    cmd = [sys.executable, __file__, "--child", "--device", args.device, "--batch", str(batch), "--C", str(args.C),
           "--N", str(args.N), "--steps", str(args.steps), "--warmup", str(args.warmup), "--fractions", str(fraction),
           "--modes", mode, "--seed", str(args.seed), "--gate", args.gate]
    cmd += ["--channels-last"] if args.channels_last else []
    cmd += ["--mode-cap", str(args.mode_cap)] if args.mode_cap else []
    cmd += ["--threads", str(args.threads)] if args.threads else []
    rc, out, err, wall = run_capped(cmd, cap)
    args.compile_spent += wall
    lines = [ln for ln in out.splitlines() if ln.startswith("ROW ")]
    if rc is None:  # killed with its compile workers
        if not lines:
            args.compile_timed_out = True
            row["error"] = (f"skipped: torch.compile did not finish within the {cap:g} s cap "
                            "(compile + steps, in a child process)")
            return row
        row["note"] = f"stopped at the {cap:g} s cap after its timed steps: memory not measured"
    elif rc != 0 or not lines:
        row["error"] = f"child process failed (exit {rc}): {(err or out).strip()[-400:]}"
        return row
    row.update(json.loads(lines[-1][4:]))
    row["isolated_wall_s"] = wall
    return row


def measure_fraction(fraction: float, batch: int, args: argparse.Namespace) -> list[dict]:
    """All modes at one survival rate; their timed steps are interleaved (mode A, B, C, A, B, C, ...) so that
    load from other processes on a shared machine affects every mode alike."""
    cuda = args.device.startswith("cuda")
    rows: dict[str, dict] = {}
    runs: dict[str, Built] = {}
    for mode in args.modes:
        row = rows[mode] = {"mode": mode, "fraction": fraction, "batch": batch}
        if _isolated(mode, args):
            continue
        if mode.startswith("fused") and not fused_available():
            row["error"] = "goldnas_fast.ops.node_sum not available"
            continue
        try:
            built = build(mode, fraction, batch, args)
            row["alive_pairs"] = built.alive_pairs
            sync(args.device)
            t0 = time.perf_counter()
            built.step()  # first call: compilation for 'compile', lazy allocations otherwise
            sync(args.device)
            row["first_step_s"] = time.perf_counter() - t0
            for _ in range(built.untimed):
                built.step()
            sync(args.device)
            row["warmup_s"] = time.perf_counter() - t0
            runs[mode] = built
            if not args.child:
                print(f"# {mode} @ batch {batch}, {fraction:.0%}: first step {row['first_step_s']:.2f} s, "
                      f"{built.untimed} untimed steps, {row['warmup_s']:.2f} s", flush=True)
        except Exception as exc:  # noqa: BLE001  (a failing mode, e.g. compile, is reported as such)
            row["error"] = _error(exc)
    times: dict[str, list[float]] = {mode: [] for mode in runs}
    timing = dict(runs)
    for _ in range(args.steps):
        for mode, built in list(timing.items()):
            try:
                sync(args.device)
                t0 = time.perf_counter()
                built.step()
                sync(args.device)
                times[mode].append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001
                rows[mode]["error"] = _error(exc)
                del runs[mode], timing[mode]
                continue
            if args.mode_cap and sum(times[mode]) > args.mode_cap:
                rows[mode]["note"] = f"timing capped at {len(times[mode])} steps (--mode-cap {args.mode_cap:g} s)"
                del timing[mode]
    for mode, built in runs.items():
        row = rows[mode]
        row["steps_timed"] = len(times[mode])
        row["step_ms"] = 1e3 * statistics.median(times[mode])
        row["step_ms_min"] = 1e3 * min(times[mode])
        if args.child:  # the timings reach the parent even if the memory measurements below outlast its cap
            print("ROW " + json.dumps(row), flush=True)
        try:
            row["saved_mib"] = built.saved_bytes() / MiB
        except Exception as exc:  # noqa: BLE001  (reported, not hidden)
            row["saved_mib"] = None
            row["saved_error"] = _error(exc, 300)
        if args.profile and fraction == 1.0:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=acts) as prof:
                built.step()
                sync(args.device)
            key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
            row["profile"] = prof.key_averages().table(sort_by=key, row_limit=15)
    if cuda:  # one mode's network at a time on the device, so that each peak is its own
        for mode, built in runs.items():
            if built.graphed:  # a replay allocates nothing: its memory is the graph's private pool
                rows[mode]["peak_note"] = "CUDA graph: replay peak not meaningful (memory held in the graph pool)"
                continue
            gc.collect()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            built.step()
            torch.cuda.synchronize()
            rows[mode]["peak_mib"] = torch.cuda.max_memory_allocated() / MiB
            rows[mode]["peak_over_resident_mib"] = (torch.cuda.max_memory_allocated() - base) / MiB
    runs.clear()
    timing.clear()
    built = None  # noqa: F841  (the last mode's network must not stay alive while the child runs)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    for mode in args.modes:
        if _isolated(mode, args):  # run by main() after these rows are saved, with the device to itself
            rows[mode]["error"] = "pending: runs in a child process after the other modes"
    return [rows[mode] for mode in args.modes]


def measure_isolated(measured: list[dict], args: argparse.Namespace) -> list[dict]:
    """``measured`` with the rows of the isolated (compile) modes filled in by their child processes."""
    out = []
    for row in measured:
        if _isolated(row["mode"], args):
            row = run_isolated(row["mode"], row["fraction"], row["batch"], args)
            if "first_step_s" in row:
                print(f"# {row['mode']} @ batch {row['batch']}, {row['fraction']:.0%} (child process): first step "
                      f"(compile) {row['first_step_s']:.1f} s", flush=True)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[64], help="batch sizes, measured in turn")
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first one")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--modes", nargs="+", default=["reference", "fused", "compile"], choices=MODES)
    parser.add_argument("--seed", type=int, default=0, help="seed of the pruning masks")
    parser.add_argument("--gate", default="sigmoid", choices=["sigmoid", "softmax"],
                        help="gates of goldnas_fast's supernet (softmax: DARTS-style, as the official code)")
    parser.add_argument("--channels-last", action="store_true",
                        help="network and input in channels_last (NHWC) memory format, for every mode")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table per mode at 100%%")
    parser.add_argument("--compile-isolation", default="auto", choices=["auto", "process", "inline"],
                        help="where compile modes run: a capped child process (auto: on CUDA) or this process")
    parser.add_argument("--compile-cap", type=float, default=300.0,
                        help="seconds after which an isolated compile mode is killed and skipped (default 300)")
    parser.add_argument("--compile-total", type=float, default=None,
                        help="seconds for all isolated compile runs together; later ones are skipped once spent")
    parser.add_argument("--mode-cap", type=float, default=None,
                        help="stop timing a mode once its timed steps took this many seconds")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and the environment here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.compile_timed_out, args.compile_spent = False, 0.0
    for name in ("steps", "C", "N"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if min(args.batch) < 1:
        parser.error("--batch must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:  # one mode, one batch, one fraction; the parent reads the last ROW line
        row = measure_fraction(args.fractions[0], args.batch[0], args)[0]
        row.pop("profile", None)
        print("ROW " + json.dumps(row), flush=True)
        return
    cuda = args.device.startswith("cuda")
    env = environment(args.device)
    layout = "channels_last" if args.channels_last else "NCHW"
    batches = ", ".join(str(b) for b in args.batch)
    print(f"NB201 supernet step, C = {args.C}, N = {args.N}, batch {batches}, 32x32, {layout}, "
          f"{args.gate} gates | {env}",
          flush=True)
    rows = []
    for batch in args.batch:
        for fraction in args.fractions:
            measured = measure_fraction(fraction, batch, args)
            # saved before the capped compile children run: a kill at the step's cap keeps these rows
            write_json(args.json, "supernet", args.device, args, rows + measured, environment_line=env)
            for row in measure_isolated(measured, args):
                profile = row.pop("profile", None)
                print(json.dumps(row), flush=True)
                if profile:
                    print(f"profile: {row['mode']}, {fraction:.0%} surviving\n{profile}", flush=True)
                rows.append(row)
            write_json(args.json, "supernet", args.device, args, rows, environment_line=env)

    mem_key = "peak_over_resident_mib" if cuda else "saved_mib"
    several = len(args.batch) > 1
    header = (["batch"] if several else []) + [
        "mode", "surviving pairs", "step (ms, median)", "step (ms, min)", "speed-up vs ref (median)",
        "first step (s)", "saved fwd (MiB)"]
    header += (["peak over resident (MiB)"] if cuda else []) + [f"{'peak' if cuda else 'saved'} vs ref", "note"]
    ref = {(r["batch"], r["fraction"]): r for r in rows if r["mode"] == "reference" and "step_ms" in r}
    table = []
    for r in rows:
        lead = [r["batch"]] if several else []
        if "step_ms" not in r:
            table.append(lead + [r["mode"], f"{r['fraction']:.0%}"] + ["-"] * (len(header) - len(lead) - 3)
                         + [r.get("error", "")[:80]])
            continue
        base = ref.get((r["batch"], r["fraction"]))
        speedup = base["step_ms"] / r["step_ms"] if base else float("nan")
        mem, base_mem = r.get(mem_key), (base or {}).get(mem_key)
        cells = lead + [r["mode"], f"{r['fraction']:.0%} ({r['alive_pairs']})", r["step_ms"], r["step_ms_min"],
                        speedup, r["first_step_s"], "n/a" if r["saved_mib"] is None else r["saved_mib"]]
        cells += ([r.get("peak_over_resident_mib", "-")] if cuda else [])
        note = r.get("saved_error") or r.get("note") or ""
        cells += [mem / base_mem if mem is not None and base_mem else float("nan"), note[:80]]
        table.append(cells)
    print(markdown_table(header, table))


if __name__ == "__main__":
    main()
