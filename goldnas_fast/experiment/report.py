"""Markdown tables of a study, made only from its run directories' ``result.json`` (and the runner's meta).

:func:`render` returns one markdown block: provenance line, the per-method table beside the NB201 paper and
the table's optimum, the per-run table, and GOLD-NAS's recorded Pareto front. :func:`splice` puts such a
block between ``<!-- BEGIN generated: NAME -->`` / ``<!-- END generated: NAME -->`` markers of a file
(``RESULTS.md``), leaving the hand-written text around it alone.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldnas_fast.errors import UserError
from goldnas_fast.experiment.reference import PAPER_ROWS, PAPER_SOURCE
from goldnas_fast.experiment.study import METHODS, SearchSpec

__all__ = ["RunRecord", "collect", "render", "splice", "mean_std", "ACCURACY_KEYS", "optimum"]

ACCURACY_KEYS = ("cifar10_test_acc_200", "cifar100_test_acc_200", "imagenet16_test_acc_200")
"""result.json ``final`` keys of the three reported columns (table columns ``c10_test_acc_200``,
``c100_test_acc_200_nats``, ``in16_test_acc_200_nats``)."""
_FINAL_KEYS = ("index", "arch", "flops_m", "params_m", "cifar10_valid_acc_200", *ACCURACY_KEYS)
NOT_RUN = "not yet run"


@dataclass
class RunRecord:
    """One expected search with what its run directory holds."""

    spec: SearchSpec
    result: dict[str, Any] | None  # result.json, None until the search finished
    meta: dict[str, Any] | None    # the runner's OUT/meta/NAME.json, None for runs it did not start


def _check_result(path: Path, result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise UserError(f"{path}: expected a JSON object")
    final = result.get("final")
    missing = [k for k in ("final", "search_seconds", "algo") if k not in result]
    if isinstance(final, dict):
        missing += [f"final.{k}" for k in _FINAL_KEYS if k not in final]
    elif "final" in result:
        missing.append("final (an object)")
    if missing:
        raise UserError(f"{path}: not an NB201 search result (missing {', '.join(missing)})")
    return result


def collect(out: Path, specs: Sequence[SearchSpec]) -> list[RunRecord]:
    """Reads ``out/runs/NAME/result.json`` and ``out/meta/NAME.json`` of every spec."""
    records = []
    for spec in specs:
        path = out / "runs" / spec.name / "result.json"
        result = None
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise UserError(f"{path}: unreadable ({exc})") from None
            result = _check_result(path, raw)
            if result["algo"] != spec.method.algo:
                raise UserError(f"{path}: a {result['algo']} search, expected {spec.method.algo}")
        meta = None
        meta_path = out / "meta" / f"{spec.name}.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                meta = None
        records.append(RunRecord(spec, result, meta))
    return records


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (``numpy.std``, ddof 0) of ``values``."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / n)


def _ms(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return NOT_RUN
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _device(rec: RunRecord) -> str:
    if not rec.spec.method.supernet:
        return "none (table queries)"
    if rec.meta and rec.meta.get("device_name"):
        return str(rec.meta["device_name"])
    cfg = (rec.result or {}).get("config", {})
    return f"{cfg.get('device_type', 'unknown')} (not started by this runner)"


def optimum() -> tuple[list[float], list[int]]:
    """Per-column maxima of the table's three reported columns, and the index holding each."""
    from goldnas_fast.nb201.benchmark import Benchmark

    bench = Benchmark()
    best = [bench.best(m) for m in ("cifar10-test-200", "cifar100-test-200", "imagenet16-test-200")]
    return [v for _, v in best], [i for i, _ in best]


def _method_table(records: Sequence[RunRecord]) -> list[str]:
    lines = ["| method | seeds | CIFAR-10 test | CIFAR-100 test | ImageNet16-120 test | search time (s) | device |",
             "|---|---|---|---|---|---|---|"]
    for key, method in METHODS.items():
        recs = [r for r in records if r.spec.method.key == key]
        if not recs:
            continue
        done = [r for r in recs if r.result is not None]
        cols = [_ms([r.result["final"][k] for r in done]) for k in ACCURACY_KEYS]
        seconds = _ms([float(r.result["search_seconds"]) for r in done]) if done else NOT_RUN
        devices = sorted({_device(r) for r in done}) or ["–"]
        lines.append(f"| {method.label} | {len(done)}/{len(recs)} | {' | '.join(cols)} | {seconds} | "
                     f"{', '.join(devices)} |")
    for name, *cols in PAPER_ROWS:
        lines.append(f"| *{name} (paper)* | – | {' | '.join(f'{m:.2f} ± {s:.2f}' for m, s in cols)} | – | – |")
    values, indices = optimum()
    lines.append(f"| **optimum** (table maximum per column) | – | "
                 f"{' | '.join(f'{v:.2f} (arch {i})' for v, i in zip(values, indices))} | – | – |")
    return lines


def _run_table(records: Sequence[RunRecord]) -> list[str]:
    lines = ["| run | arch index | CIFAR-10 valid | CIFAR-10 test | CIFAR-100 test | ImageNet16-120 test | "
             "FLOPs (M) | params (M) | search (s) | stop | device |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r.result is None:
            state = "unfinished (resume with the same command)" if r.meta else NOT_RUN
            lines.append(f"| {r.spec.name} | {state} |" + " |" * 9)
            continue
        f = r.result["final"]
        lines.append(f"| {r.spec.name} | {f['index']} | {f['cifar10_valid_acc_200']:.2f} | "
                     f"{' | '.join(f'{f[k]:.2f}' for k in ACCURACY_KEYS)} | {f['flops_m']:.2f} | "
                     f"{f['params_m']:.3f} | {float(r.result['search_seconds']):.2f} | "
                     f"{r.result.get('stop_reason', '–')} | {_device(r)} |")
    return lines


def _pareto_table(rec: RunRecord) -> list[str]:
    lines = ["| recorded at | arch index | FLOPs (M) | params (M) | CIFAR-10 valid | CIFAR-10 test | final |",
             "|---|---|---|---|---|---|---|"]
    for p in rec.result.get("pareto", []):
        at = f"epoch {p['epoch']}" if "epoch" in p else f"evaluation {p['evaluation']}" if "evaluation" in p else "end"
        lines.append(f"| {at} | {p['index']} | {p['flops_m']:.2f} | {p['params_m']:.3f} | "
                     f"{p['cifar10_valid_acc_200']:.2f} | {p['cifar10_test_acc_200']:.2f} | "
                     f"{'yes' if p.get('final') else ''} |")
    return lines


def _true_front_table() -> list[str]:
    from goldnas_fast.experiment.plots import table_front

    acc, flops, front = table_front()
    lines = ["| FLOPs (M) | " + " | ".join(f"{flops[i]:.1f}" for i in front) + " |",
             "|---|" + "---|" * len(front),
             "| CIFAR-10 test | " + " | ".join(f"{acc[i]:.2f}" for i in front) + " |",
             "| arch index | " + " | ".join(str(i) for i in front) + " |"]
    return lines


def git_commit(repo: Path) -> str:
    """``abc1234`` (``+ uncommitted changes`` when the package's code differs from it), or ``'unknown'``.

    Only ``goldnas_fast/`` counts: regenerating one block of ``RESULTS.md`` must not mark the next dirty."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--",
                                "goldnas_fast"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


def _machines(records: Sequence[RunRecord]) -> str:
    seen = sorted({f"{m.get('host', '?')}: {m.get('device_name', '?')}" for r in records
                   if (m := r.meta) is not None and r.result is not None})
    return "; ".join(seen) or "–"


def _commits(records: Sequence[RunRecord]) -> str:
    seen = sorted({str(m.get("commit", "unknown")) for r in records if (m := r.meta) is not None and r.result})
    return ", ".join(seen) or "–"


def front_record(records: Sequence[RunRecord]) -> RunRecord | None:
    """The finished GOLD-NAS run whose recorded front is shown (lowest seed)."""
    gold = [r for r in records if r.spec.method.key == "goldnas" and r.result is not None]
    return min(gold, key=lambda r: r.spec.seed) if gold else None


def render(records: Sequence[RunRecord], study: dict[str, Any], figure: str | None, title: str,
           trajectory: str | None = None) -> str:
    """The markdown block of a study (``figure``, ``trajectory``: links to its front and trajectory figures,
    relative to the target file)."""
    repo = Path(__file__).resolve().parents[2]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"### {title}", "",
             f"Generated by `goldnas-fast experiment` from `{study['out']}/runs/*/result.json` on {date} (code at "
             f"commit {git_commit(repo)}); scale `{study['scale']}`; the runs ran at commit {_commits(records)} "
             f"on {_machines(records)}.", "",
             "Test accuracies in % from the table (200 epochs, seed mean), mean ± std over seeds (std: ddof 0); "
             f"search time is each run's own `search_seconds`. Paper rows: {PAPER_SOURCE}.", ""]
    lines += _method_table(records) + [""]
    lines += ["Per run (the final architecture of each search):", ""] + _run_table(records) + [""]
    rec = front_record(records)
    if rec is not None:
        lines += [f"Pareto front recorded by `{rec.spec.name}` (table accuracies of its recorded architectures):",
                  ""] + _pareto_table(rec) + [""]
    if figure:
        what = f"`{rec.spec.name}`'s recorded architectures over" if rec else "GOLD-NAS not yet run;"
        lines += [f"![accuracy vs FLOPs]({figure})", "",
                  f"Figure: {what} the table's accuracy–FLOPs front of all 15,625 architectures "
                  "(CIFAR-10 test, 200 epochs; FLOPs by the official rule). The true front:", ""]
        lines += _true_front_table() + [""]
    if trajectory:
        lines += [f"![search trajectories]({trajectory})", "",
                  "Figure: per epoch of each supernet search (`log.jsonl`), the table accuracy and FLOPs of the "
                  "architecture it would return at that epoch, GOLD-NAS's surviving (edge, op) pairs, and the "
                  "number of `skip_connect` edges (DARTS's collapse drives it to 6).", ""]
    return "\n".join(lines).rstrip() + "\n"


_MARK = "<!-- {} generated: {} -->"


def splice(path: Path, name: str, block: str) -> None:
    """Replaces the block ``name`` of ``path`` (between its markers), or appends it; creates ``path``."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise UserError(f"--section must be letters, digits, '-' or '_', got {name!r}")
    begin, end = _MARK.format("BEGIN", name), _MARK.format("END", name)
    text = path.read_text() if path.is_file() else ""
    new = f"{begin}\n{block.rstrip()}\n{end}"
    if begin in text and end in text and text.index(begin) < text.index(end):
        text = text[:text.index(begin)] + new + text[text.index(end) + len(end):]
    elif begin in text or end in text:
        raise UserError(f"{path}: unbalanced markers of section {name!r}; fix them by hand")
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + new + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
