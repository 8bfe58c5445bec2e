"""Peak memory of one GOLD-NAS search training step: reference vs fused vs fused + lean (14 cells, C = 36).

Usage: python bench/bench_goldnas_memory.py [--device cpu|cuda] [--batch 8 16] [--layers 14] [--C 36]
                                           [--steps 5] [--child-timeout S] [--json PATH]

One step = forward (logits + auxiliary logits), CE + 0.4 CE_aux, one backward, gradient clipping, then the
alpha and weight SGD steps (momentum), as in ``goldnas.md`` §2.2. Every (mode, batch) runs in a fresh
subprocess so that allocator state does not leak from one measurement into the next.

* CUDA: ``torch.cuda.max_memory_allocated`` over the step at the requested batch (96 by default); the step
  time is the median of ``--steps`` steps after one warm-up step.
* CPU (no allocator statistics): two estimates, both scaled to batch 96 and labelled as such:
  1. *saved for backward*: bytes of the distinct non-parameter storages that autograd saves during the
     forward pass (``torch.autograd.graph.saved_tensors_hooks``), scaled linearly from the measured batch
     to 96 (they are all per-sample activations), plus params, grads and momentum;
  2. *peak RSS*: the resident-set high-water mark (``VmHWM``) over the first step of a fresh process minus
     the RSS before it, plus the weights; extrapolated linearly to 96 from two batch sizes. This includes
     the transient backward peak (e.g. lean mode's per-node recomputation) that saved bytes miss, and
     the allocator's fragmentation; the step time printed is that first step's.
The target is <= 8 GB for fused + lean at batch 96 (issue 16 on the GPU: lean <= 4 GB and <= 1.3x the
non-lean step time; fused >= 1.5x the reference's step speed). A mode whose process fails or runs past
``--child-timeout`` gets a row with its error; the other modes still run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, markdown_table, write_json  # noqa: E402

MODES = {"reference": ("reference", False), "reference+lean": ("reference", True), "fused": ("fused", False),
         "fused+lean": ("fused", True)}
TARGET_BATCH = 96
GB = 1e9


def _fused_available() -> bool:
    import goldnas_fast.ops

    return callable(getattr(goldnas_fast.ops, "node_sum", None))


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(mode: str, batch: int, device: str, C: int, layers: int, steps: int = 1) -> dict[str, float]:
    """One process, one mode: static bytes, saved-for-backward bytes, peak step memory, step time."""
    from goldnas_fast.spaces.goldnas import GoldNasSearchNetwork

    backend, lean = MODES[mode]
    torch.manual_seed(0)
    net = GoldNasSearchNetwork(C=C, layers=layers, backend=backend, lean=lean).to(device).train()
    opt_w = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9, weight_decay=3e-4)
    opt_a = torch.optim.SGD(net.arch_parameters(), lr=1.0, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def loss_fn() -> torch.Tensor:
        logits, aux = net(x)
        return F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)

    def step() -> None:
        loss_fn().backward()
        torch.nn.utils.clip_grad_norm_(net.weight_parameters(), 5.0)
        opt_a.step()
        opt_w.step()
        opt_w.zero_grad(set_to_none=True)
        opt_a.zero_grad(set_to_none=True)

    params = list(net.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    static = 3 * param_bytes  # weights, their gradients and the momentum buffers
    cuda = device.startswith("cuda")

    if not cuda:
        # First step of a fresh process: the RSS high-water mark over it, minus the RSS before it (which
        # holds the weights), is what the step adds: gradients, momentum buffers and the activation peak.
        base = _rss_kb("VmRSS")
        t0 = time.perf_counter()
        step()
        elapsed = time.perf_counter() - t0
        peak_delta = (_rss_kb("VmHWM") - base) * 1024
        peak = param_bytes + peak_delta
    else:
        step()  # warm-up; creates the momentum buffers
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(max(1, steps)):
            t0 = time.perf_counter()
            step()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        elapsed = statistics.median(times)
        peak = torch.cuda.max_memory_allocated()
        peak_delta = peak - torch.cuda.memory_allocated()

    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in param_ptrs:
            saved[s.data_ptr()] = max(saved.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()
    opt_w.zero_grad(set_to_none=True)
    opt_a.zero_grad(set_to_none=True)
    return {"mode": mode, "batch": batch, "static": static, "saved": sum(saved.values()), "peak": peak,
            "peak_delta": peak_delta, "step_s": elapsed}


def run_one(mode: str, batch: int, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", mode, "--batch", str(batch), "--device", args.device,
           "--C", str(args.C), "--layers", str(args.layers), "--threads", str(args.threads), "--steps", str(args.steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=args.child_timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


def _failure(exc: Exception) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        return f"exit {exc.returncode}: {(exc.stderr or '').strip()[-300:]}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"did not finish within --child-timeout {exc.timeout:g} s"
    return f"{type(exc).__name__}: {exc}"[:300]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="batch sizes (CUDA default: 96; CPU default: 8 16, extrapolated to 96)")
    parser.add_argument("--C", type=int, default=36)
    parser.add_argument("--layers", type=int, default=14)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of each measuring process (1: robust on a shared machine)")
    parser.add_argument("--steps", type=int, default=5, help="CUDA: timed steps per mode (median)")
    parser.add_argument("--child-timeout", type=float, default=None,
                        help="seconds after which a mode's measuring process is stopped (its row gives the error)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and the environment here")
    parser.add_argument("--one", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.one, args.batch[0], args.device, args.C, args.layers, args.steps)))
        return
    cuda = args.device.startswith("cuda")
    batches = args.batch or ([TARGET_BATCH] if cuda else [8, 16])
    modes = [m for m in args.modes if not m.startswith("fused") or _fused_available()]
    skipped = [m for m in args.modes if m not in modes]
    print(f"GOLD-NAS search step memory, {args.layers} cells, C = {args.C}, 32x32 | {environment(args.device)}"
          + ("" if cuda else f" | measuring processes use {args.threads} thread(s)"))
    if skipped:
        print(f"(skipped {skipped}: goldnas_fast.ops.node_sum is not available)")
    rows, records = [], []
    for mode in modes:
        try:
            res = [run_one(mode, b, args) for b in batches]
        except (subprocess.SubprocessError, ValueError) as exc:  # reported as a row; the other modes go on
            records.append({"mode": mode, "error": _failure(exc)})
            print(json.dumps(records[-1]), flush=True)
            write_json(args.json, "goldnas_memory", args.device, args, records)
            continue
        for r in res:
            print(json.dumps(r), flush=True)
        records += res
        write_json(args.json, "goldnas_memory", args.device, args, records)
        last = res[-1]
        scale = TARGET_BATCH / last["batch"]
        saved96 = last["static"] + last["saved"] * scale
        if cuda:
            rows.append([mode, last["batch"], last["saved"] / GB, last["peak"] / GB, saved96 / GB, last["step_s"]])
            continue
        if len(res) >= 2 and res[-1]["batch"] != res[0]["batch"]:
            slope = (res[-1]["peak_delta"] - res[0]["peak_delta"]) / (res[-1]["batch"] - res[0]["batch"])
            peak96 = last["static"] + res[-1]["peak_delta"] + slope * (TARGET_BATCH - res[-1]["batch"])
        else:
            peak96 = last["static"] + last["peak_delta"] * scale
        rows.append([mode, last["batch"], last["saved"] / GB, last["peak"] / GB, saved96 / GB, peak96 / GB,
                     last["step_s"]])
    if cuda:
        header = ["mode", "batch", "saved fwd (GB)", "peak allocated (GB)", "saved+static scaled to 96 (GB)",
                  "step (s)"]
    else:
        header = ["mode", "batch", "saved fwd (GB)", "peak RSS step (GB)", "est. @96: saved+static (GB)",
                  "est. @96: peak RSS (GB)", "1st step (s)"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
