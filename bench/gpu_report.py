"""The GPU suite's report: step status, every benchmark's table, and each target beside its measured value.

Usage: python bench/gpu_report.py --work DIR --out DIR [--quiet]

``scripts/gpu_check.sh`` calls this after every step. It reads what the steps left in the work folder:

* ``meta.json``: commit, GPU, torch, the time budget;
* ``steps.jsonl``: one line per step: ``step``, ``status`` (passed, failed, timeout, skipped), ``rc``,
  ``seconds``, ``cap``, ``note``;
* ``NAME.json``: the ``--json`` output of each benchmark (``bench``, ``environment``, ``args``, ``rows``);

and the pytest log ``tests.log`` in the output folder. It writes ``summary.md`` (steps, targets, tables)
and ``results.json`` (all of it, machine-readable) into the output folder and prints the summary. It uses
the standard library only, so it runs in a second and works on partial results.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCHES = ("mixed_sum", "node_sum", "overhead", "supernet", "goldnas_memory", "train", "search", "search_darts")
BIG_SHAPE = [256, 64, 64, 64]  # the bandwidth target's shape (issue 14)
MET, MISSED, NOT_MEASURED = "met", "MISSED", "not measured"


@dataclass
class Target:
    """One target of the issues beside its measured value."""

    issue: int
    what: str
    target: str
    measured: str
    verdict: str  # MET, MISSED or NOT_MEASURED


# ------------------------------------------------------------------------------------------- loading
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def parse_pytest(text: str) -> dict[str, Any]:
    """Counts of pytest's final summary line (``13 failed, 233 passed in 20.1s``) and the failed test ids.

    Returns ``{}`` when the log holds no summary line (pytest did not finish)."""
    counts: dict[str, Any] = {}
    for line in reversed(text.splitlines()):
        found = re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)\b", line)
        if found and re.search(r"\bin [\d.]+s", line):
            for n, kind in found:
                kind = {"error": "errors", "warning": "warnings"}.get(kind, kind)
                counts[kind] = int(n)
            break
    if not counts:
        return {}
    counts["failed_ids"] = [m.group(1) for m in re.finditer(r"^(?:FAILED|ERROR) (\S+)", text, re.MULTILINE)]
    return counts


def load(work: Path, out: Path) -> dict[str, Any]:
    """Everything the steps left so far (missing pieces are simply absent)."""
    steps = []
    steps_file = work / "steps.jsonl"
    if steps_file.exists():
        for line in steps_file.read_text().splitlines():
            try:
                steps.append(json.loads(line))
            except ValueError:
                continue
    benches = {}
    for name in BENCHES:
        payload = _read_json(work / f"{name}.json")
        if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
            benches[name] = payload
    tests_log = out / "tests.log"
    tests = parse_pytest(tests_log.read_text(errors="replace")) if tests_log.exists() else {}
    return {"meta": _read_json(work / "meta.json") or {}, "steps": steps, "tests": tests, "benches": benches}


# ------------------------------------------------------------------------------------------- targets
def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _rows(data: dict[str, Any], bench: str) -> list[dict[str, Any]]:
    return data["benches"].get(bench, {}).get("rows", [])


def _missing(data: dict[str, Any], step: str) -> str:
    """Why a number is absent: the step wrote results without that row, or its status, or that it did not run."""
    status = next((s for s in reversed(data["steps"]) if s.get("step") == step), None)
    if step in data["benches"]:
        return f"no such row in {step}'s results" + (f" (step {status.get('status')})" if status else "")
    if status:
        note = f": {status['note']}" if status.get("note") else ""
        return f"step {step} {status.get('status')}{note}"
    return f"step {step} did not run"


def _verdict(ok: bool) -> str:
    return MET if ok else MISSED


def _tests_target(data: dict[str, Any]) -> Target:
    t = data["tests"]
    what, goal = "CUDA tests (`-k 'cuda or graphed'`)", "all pass"
    if not t:
        return Target(14, what, goal, _missing(data, "tests"), NOT_MEASURED)
    bad = t.get("failed", 0) + t.get("errors", 0)
    passed, skipped = t.get("passed", 0), t.get("skipped", 0)
    text = ", ".join(f"{t[k]} {k}" for k in ("passed", "failed", "errors", "skipped") if t.get(k))
    if skipped > passed:  # on a GPU machine the CUDA tests must run, not skip
        text += " (more skipped than passed: CUDA device or kernels not found?)"
    return Target(14, what, goal, text, _verdict(bad == 0 and passed > 0 and skipped <= passed))


def _ratio_target(issue: int, what: str, goal: str, values: list[tuple[float, str]], ok, missing: str) -> Target:
    """``values``: (number, label) pairs; met when ``ok`` holds for every one."""
    if not values:
        return Target(issue, what, goal, missing, NOT_MEASURED)
    text = "; ".join(f"{label} {v:.2f}x" for v, label in values)
    return Target(issue, what, goal, text, _verdict(all(ok(v) for v, _ in values)))


def _op_targets(data: dict[str, Any]) -> list[Target]:
    out = []
    small = [(r["eager_over_fused"], f"{tuple(r['shape'])} K={r['K']}:") for r in _rows(data, "mixed_sum")
             if r.get("shape") != BIG_SHAPE and _num(r.get("eager_over_fused")) is not None]
    out.append(_ratio_target(14, "mixed_sum fwd+bwd speed-up over eager, small shapes", ">= 2x", small,
                             lambda v: v >= 2, _missing(data, "mixed_sum")))
    node = [(r["eager_over_fused"], f"{tuple(r['shape'])} {r.get('entries', '')}:") for r in _rows(data, "node_sum")
            if _num(r.get("eager_over_fused")) is not None]
    out.append(_ratio_target(14, "node_sum fwd+bwd speed-up over eager", ">= 2x", node,
                             lambda v: v >= 2, _missing(data, "node_sum")))
    big = [r for r in _rows(data, "mixed_sum") if r.get("shape") == BIG_SHAPE]
    what = "mixed_sum bandwidth at (256, 64, 64, 64) K=5, fraction of device copy"
    if big and _num(big[0].get("fraction_of_copy")) is not None:
        r = big[0]
        out.append(Target(14, what, ">= 80%", f"{100 * r['fraction_of_copy']:.0f}% ({r['fused_gbps']:.0f} of "
                          f"{r['copy_gbps']:.0f} GB/s)", _verdict(r["fraction_of_copy"] >= 0.8)))
    else:
        out.append(Target(14, what, ">= 80%", _missing(data, "mixed_sum"), NOT_MEASURED))
    rows = _rows(data, "overhead")
    add = {r["variant"]: r["us_per_call"] for r in rows if r.get("op") == "torch.add"}
    for prefix in ("mixed_sum (", "node_sum ("):
        for variant in ("fwd", "fwd+bwd"):
            what = f"per-call host overhead, {prefix[:-2]} {variant}, tiny tensors"
            mine = [r for r in rows if str(r.get("op", "")).startswith(prefix) and r.get("variant") == variant]
            if mine and add.get(variant) and _num(mine[0].get("us_per_call")) is not None:
                ratio = mine[0]["us_per_call"] / add[variant]
                out.append(Target(14, what, "<= 3x torch.add", f"{ratio:.2f}x ({mine[0]['us_per_call']:.1f} vs "
                                  f"{add[variant]:.1f} us)", _verdict(ratio <= 3)))
            else:
                out.append(Target(14, what, "<= 3x torch.add", _missing(data, "overhead"), NOT_MEASURED))
    return out


def _supernet_targets(data: dict[str, Any]) -> list[Target]:
    rows = [r for r in _rows(data, "supernet") if r.get("fraction") == 1.0]
    batches = sorted({r.get("batch") for r in rows if isinstance(r.get("batch"), int)}) or [64, 256]
    out = []
    for b in batches:
        at = [r for r in rows if r.get("batch") == b]
        ref = next((r for r in at if r.get("mode") == "reference" and _num(r.get("step_ms"))), None)
        fused = [r for r in at if str(r.get("mode", "")).startswith("fused") and "+lean" not in r["mode"]
                 and _num(r.get("step_ms"))]
        best = min(fused, key=lambda r: r["step_ms"]) if fused else None
        what = f"NB201 supernet step, batch {b}, all pairs: speed-up of the best fused mode over eager reference"
        if ref and best:
            s = ref["step_ms"] / best["step_ms"]
            out.append(Target(16, what, ">= 4x", f"{s:.2f}x ({best['mode']} {best['step_ms']:.1f} ms vs "
                              f"{ref['step_ms']:.1f} ms)", _verdict(s >= 4)))
        else:
            out.append(Target(16, what, ">= 4x", _why(at, "reference", data), NOT_MEASURED))
        what = f"NB201 supernet step, batch {b}: peak memory of fused (eager) over reference"
        mem = [r for r in fused if _num(r.get("peak_over_resident_mib"))]
        if ref and _num(ref.get("peak_over_resident_mib")) and mem:
            low = min(mem, key=lambda r: r["peak_over_resident_mib"])
            q = low["peak_over_resident_mib"] / ref["peak_over_resident_mib"]
            out.append(Target(16, what, "<= 0.25x", f"{q:.2f}x ({low['mode']} {low['peak_over_resident_mib']:.0f} "
                              f"vs {ref['peak_over_resident_mib']:.0f} MiB)", _verdict(q <= 0.25)))
        else:
            out.append(Target(16, what, "<= 0.25x", _why(at, "reference", data), NOT_MEASURED))
        what = f"NB201 supernet step, batch {b}: best fused step time over the official AutoDL code's"
        autodl = next((r for r in at if str(r.get("mode", "")).startswith("autodl") and _num(r.get("step_ms"))), None)
        if autodl and best:
            q = best["step_ms"] / autodl["step_ms"]
            out.append(Target(16, what, "<= 0.25x", f"{q:.2f}x ({best['mode']} {best['step_ms']:.1f} ms vs "
                              f"{autodl['step_ms']:.1f} ms)", _verdict(q <= 0.25)))
        else:
            out.append(Target(16, what, "<= 0.25x", _why(at, "autodl", data), NOT_MEASURED))
    return out


def _why(rows: list[dict[str, Any]], mode: str, data: dict[str, Any]) -> str:
    """The error of ``mode``'s row, else the supernet step's status."""
    for r in rows:
        if str(r.get("mode", "")).startswith(mode) and r.get("error"):
            return f"{r['mode']}: {r['error'][:120]}"
    return _missing(data, "supernet")


def _search_targets(data: dict[str, Any]) -> list[Target]:
    out = []
    for bench, algo, goal, limit in (("search", "GOLD-NAS", "<= 300 s", 300.0), ("search_darts", "DARTS-V1",
                                                                               "<= 600 s", 600.0)):
        what = f"`goldnas-fast search --device cuda`, {algo} on NB201, 50 epochs over 25k real images (projected)"
        rows = _rows(data, bench)
        if rows and _num(rows[0].get("projected_protocol_s")):
            r = rows[0]
            out.append(Target(16, what, goal, f"{r['projected_protocol_s']:.0f} s projected from {r['epochs_done']} "
                              f"epoch(s): {r['images_per_s']:.0f} img/s, wall {r['wall_s']:.0f} s",
                              _verdict(r["projected_protocol_s"] <= limit)))
        else:
            why = rows[0].get("error", "")[:120] if rows else _missing(data, bench)
            if bench == "search_darts" and not rows and not any(s.get("step") == bench for s in data["steps"]):
                why = "the suite runs no DARTS search (time budget): `bench/bench_search.py --algo darts`"
            out.append(Target(16, what, goal, why or _missing(data, bench), NOT_MEASURED))
    return out


def _goldnas_targets(data: dict[str, Any]) -> list[Target]:
    by_mode = {r["mode"]: r for r in _rows(data, "goldnas_memory") if "mode" in r and _num(r.get("step_s"))}
    ref, fused, lean = by_mode.get("reference"), by_mode.get("fused"), by_mode.get("fused+lean")
    missing = _missing(data, "goldnas_memory")
    out = []
    what = "GOLD-NAS space (14 cells, C=36, batch 96): fused step speed over reference"
    if ref and fused:
        s = ref["step_s"] / fused["step_s"]
        out.append(Target(16, what, ">= 1.5x", f"{s:.2f}x ({1e3 * fused['step_s']:.0f} vs {1e3 * ref['step_s']:.0f} ms)",
                          _verdict(s >= 1.5)))
    else:
        out.append(Target(16, what, ">= 1.5x", missing, NOT_MEASURED))
    what = "GOLD-NAS space: fused + lean peak allocated"
    if lean and _num(lean.get("peak")):
        gb = lean["peak"] / 1e9
        out.append(Target(16, what, "<= 4 GB", f"{gb:.2f} GB", _verdict(gb <= 4)))
    else:
        out.append(Target(16, what, "<= 4 GB", missing, NOT_MEASURED))
    what = "GOLD-NAS space: fused + lean step time over fused"
    if lean and fused:
        q = lean["step_s"] / fused["step_s"]
        out.append(Target(16, what, "<= 1.3x", f"{q:.2f}x", _verdict(q <= 1.3)))
    else:
        out.append(Target(16, what, "<= 1.3x", missing, NOT_MEASURED))
    return out


def evaluate_targets(data: dict[str, Any]) -> list[Target]:
    """Every target of issues 14 and 16, in the issues' order, beside what the suite measured."""
    targets = [_tests_target(data), *_op_targets(data), *_supernet_targets(data), *_search_targets(data),
               *_goldnas_targets(data)]
    rates = [r for r in _rows(data, "train") if _num(r.get("images_per_s"))]
    best = {}
    for r in rates:
        if r["images_per_s"] > best.get(r["arch"], {}).get("images_per_s", 0):
            best[r["arch"]] = r
    seen = "; ".join(f"best single-arch rate, {a}: {r['images_per_s']:.0f} img/s ({r['loop']})" for a, r in best.items())
    targets.append(Target(16, "NB201 12-epoch training, 12 architectures at once", "<= 5 min for all 12",
                          "not run by the suite (needs `goldnas-fast train` over several architectures)"
                          + (f"; {seen}" if seen else ""), NOT_MEASURED))
    targets.append(Target(16, "CPU benchmarks", "no worse than before",
                          "not a GPU measurement: rerun the CPU benchmarks before and after", NOT_MEASURED))
    return targets


# ------------------------------------------------------------------------------------------- tables
COLUMNS = {
    "mixed_sum": ["shape", "K", "fused_ms", "eager_ms", "compile_ms", "eager_over_fused", "compile_over_fused",
                  "fused_gbps", "copy_gbps", "fraction_of_copy"],
    "node_sum": ["shape", "entries", "fused_ms", "eager_ms", "compile_ms", "eager_over_fused", "compile_over_fused",
                 "fused_saved_mib", "ref_saved_mib"],
    "overhead": ["op", "variant", "us_per_call", "over_torch_add"],
    "supernet": ["batch", "mode", "fraction", "alive_pairs", "step_ms", "step_ms_min", "speedup_vs_reference",
                 "first_step_s", "saved_mib", "peak_over_resident_mib", "peak_vs_reference", "steps_timed", "note"],
    "goldnas_memory": ["mode", "batch", "peak_gb", "saved_gb", "step_ms", "speed_vs_reference"],
    "train": ["arch", "index", "mflops", "loop", "images_per_s", "over_plain"],
    "search": ["algo", "data", "epochs_done", "wall_s", "search_s", "images_per_epoch", "images_per_s",
               "projected_protocol_s", "final_arch", "final_cifar10_test_acc_200"],
}
COLUMNS["search_darts"] = COLUMNS["search"]
TITLES = {
    "mixed_sum": "mixed_sum forward+backward (`bench/bench_mixed_sum.py`)",
    "node_sum": "node_sum forward+backward (`bench/bench_node_sum.py`)",
    "overhead": "Per-call host overhead on tiny tensors (`bench/bench_overhead.py`)",
    "supernet": "NB201 supernet training step (`bench/bench_supernet.py`)",
    "goldnas_memory": "GOLD-NAS space step, 14 cells, C = 36 (`bench/bench_goldnas_memory.py`)",
    "train": "Training throughput (`bench/bench_train.py`)",
    "search": "Search on real data (`bench/bench_search.py`)",
    "search_darts": "DARTS search on real data (`bench/bench_search.py --algo darts`)",
}


def derive(bench: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the ratios the tables show (relative to the reference row of the same configuration)."""
    rows = [dict(r) for r in rows]
    if bench == "supernet":
        ref = {(r.get("batch"), r.get("fraction")): r for r in rows if r.get("mode") == "reference"}
        for r in rows:
            base = ref.get((r.get("batch"), r.get("fraction")), {})
            if _num(r.get("step_ms")) and _num(base.get("step_ms")):
                r["speedup_vs_reference"] = base["step_ms"] / r["step_ms"]
            if _num(r.get("peak_over_resident_mib")) and _num(base.get("peak_over_resident_mib")):
                r["peak_vs_reference"] = r["peak_over_resident_mib"] / base["peak_over_resident_mib"]
    if bench == "goldnas_memory":
        ref = next((r for r in rows if r.get("mode") == "reference" and _num(r.get("step_s"))), None)
        for r in rows:
            for key in ("peak", "saved"):
                if _num(r.get(key)):
                    r[f"{key}_gb"] = r[key] / 1e9
            if _num(r.get("step_s")):
                r["step_ms"] = 1e3 * r["step_s"]
                if ref:
                    r["speed_vs_reference"] = ref["step_s"] / r["step_s"]
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = str(value) if not isinstance(value, list) else "(" + ", ".join(str(v) for v in value) + ")"
        return text.replace("|", "/").replace("\n", " ")[:100]
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "-"
    mag = abs(value)
    if mag >= 1000:
        return f"{value:,.0f}"
    if mag >= 100:
        return f"{value:.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(bench: str, rows: list[dict[str, Any]]) -> str:
    """A markdown table of ``rows``: the bench's columns that any row has, then an ``error`` column if needed."""
    rows = derive(bench, rows)
    wanted = COLUMNS.get(bench) or list(dict.fromkeys(k for r in rows for k in r))
    cols = [c for c in wanted if any(c in r for r in rows)]
    if any(r.get("error") for r in rows):
        cols.append("error")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def targets_table(targets: list[Target]) -> str:
    lines = ["| issue | what | target | measured | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {t.issue} | {t.what} | {t.target} | {_cell(t.measured)} | {t.verdict} |" for t in targets]
    return "\n".join(lines)


def _step_note(step: dict[str, Any], data: dict[str, Any]) -> str:
    """The step's note; for the tests, pytest's counts first."""
    notes = [step.get("note") or ""]
    if step.get("step") == "tests" and data["tests"]:
        t = data["tests"]
        notes.insert(0, ", ".join(f"{t[k]} {k}" for k in ("passed", "failed", "errors", "skipped") if t.get(k)))
    return "; ".join(n for n in notes if n)


def steps_table(data: dict[str, Any]) -> str:
    lines = ["| step | status | seconds | cap (s) | note |", "|---|---|---|---|---|"]
    for s in data["steps"]:
        lines.append(f"| {s.get('step')} | {s.get('status')} | {_cell(s.get('seconds'))} | {_cell(s.get('cap'))} | "
                     f"{_cell(_step_note(s, data))} |")
    return "\n".join(lines)


def _heading(meta: dict[str, Any]) -> str:
    keys = ("gpu", "torch", "cuda_version", "commit", "started")
    return ", ".join(f"{k} {meta[k]}" for k in keys if meta.get(k) not in (None, ""))


def render_markdown(data: dict[str, Any], targets: list[Target]) -> str:
    parts = [f"# GPU check\n\n{_heading(data['meta'])}\n", "## Steps\n", steps_table(data), ""]
    t = data["tests"]
    if t.get("failed_ids"):
        parts += ["Failed tests:\n", "\n".join(f"- `{i}`" for i in t["failed_ids"][:60]), ""]
    parts += ["## Targets (issues 14 and 16)\n", targets_table(targets), ""]
    for bench in BENCHES:
        payload = data["benches"].get(bench)
        if not payload:
            continue
        env = payload.get("environment", {})
        where = ", ".join(str(env[k]) for k in ("gpu", "torch", "date") if env.get(k))
        parts += [f"## {TITLES.get(bench, bench)}\n", f"{where}\n", table(bench, payload["rows"]), ""]
    return "\n".join(parts)


def summary_text(data: dict[str, Any], targets: list[Target]) -> str:
    """What the suite prints last: each step's status, then each target beside its measured value."""
    lines = [f"GPU check summary: {_heading(data['meta'])}", "steps:"]
    for s in data["steps"]:
        note = _step_note(s, data)
        note = f"  {note}" if note else ""
        lines.append(f"  {s.get('step', '?'):<16}{s.get('status', '?'):<9}{_cell(s.get('seconds')):>6} s"
                     f" (cap {_cell(s.get('cap'))} s){note}")
    lines.append("targets:")
    for t in targets:
        lines.append(f"  [{t.verdict:^12}] #{t.issue} {t.what}: target {t.target}; measured {t.measured}")
    counts = {v: sum(t.verdict == v for t in targets) for v in (MET, MISSED, NOT_MEASURED)}
    lines.append(f"targets met {counts[MET]}, missed {counts[MISSED]}, not measured {counts[NOT_MEASURED]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="the suite's work folder (steps.jsonl, NAME.json)")
    parser.add_argument("--out", type=Path, required=True, help="where summary.md and results.json go")
    parser.add_argument("--quiet", action="store_true", help="write the files, print nothing")
    args = parser.parse_args(argv)
    if not args.work.is_dir():
        parser.error(f"--work {args.work} is not a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    data = load(args.work, args.out)
    targets = evaluate_targets(data)
    (args.out / "summary.md").write_text(render_markdown(data, targets))
    results = {**data, "targets": [asdict(t) for t in targets]}
    tmp = args.out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(args.out / "results.json")
    if not args.quiet:
        print(summary_text(data, targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
