"""CPU-side tests of the GPU suite's plumbing: scripts/gpu_check.sh, bench/gpu_report.py, the --json outputs.

Nothing here builds the extension or needs a GPU: the script is checked for syntax, for refusing a machine
without CUDA before it touches anything, for its time budget, and its step runner is exercised with
ordinary commands (sleep, false, true); the report is fed synthetic benchmark JSON.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
sys.path.insert(0, str(REPO / "bench"))

import gpu_report  # noqa: E402


def _bash(script: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


# ------------------------------------------------------------------------------------------ the script
def test_script_syntax_is_valid():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_script_without_arguments_prints_usage():
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "usage: bash scripts/gpu_check.sh OUTDIR [DATA_NPZ]" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script would run the whole suite")
def test_script_refuses_a_machine_without_a_gpu_in_one_line_and_touches_nothing(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: refused:"), result.stderr
    assert "CUDA" in lines[0] or "cuda" in lines[0]
    assert result.stdout == ""
    assert not out.exists()  # refused before creating OUTDIR, so before any build or step


def test_script_refuses_a_missing_data_file(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), str(tmp_path / "nope.npz")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "DATA_NPZ" in result.stderr and "does not exist" in result.stderr


def _budgets() -> dict[str, int]:
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^BUDGET_([a-z_]+)=(\d+)", SCRIPT.read_text(), re.MULTILINE)}


def test_step_budgets_fit_eight_minutes_and_every_step_has_one():
    budgets = _budgets()
    default_total = int(re.search(r"GPU_CHECK_BUDGET:-(\d+)", SCRIPT.read_text()).group(1))
    assert default_total <= 480
    assert sum(budgets.values()) <= default_total, budgets
    steps = re.findall(r"run_step (\w+) \"\$BUDGET_(\w+)\"", SCRIPT.read_text())
    assert {name for name, _ in steps} >= {"build", "tests", "mixed_sum", "node_sum", "overhead", "supernet",
                                           "goldnas_memory", "train", "search"}
    for name, budget in steps:
        assert name == budget and budget in budgets


def test_run_step_records_pass_fail_timeout_and_skip_and_goes_on(tmp_path):
    work, out, log = tmp_path / "work", tmp_path / "out", tmp_path / "step.log"
    work.mkdir()
    out.mkdir()
    script = f"""
source '{SCRIPT}'
PY='{sys.executable}'; WORK='{work}'; OUT='{out}'; BUDGET_TOTAL=100; DEADLINE=$(( $(date +%s) + 100 ))
run_step slow 1 '{log}' sleep 30; echo "slow=$?"
run_step bad 20 '{log}' false; echo "bad=$?"
run_step good 20 '{log}' bash -c 'echo hello'; echo "good=$?"
DEADLINE=$(date +%s)
run_step late 20 '{log}' true; echo "late=$?"
"""
    result = _bash(script)
    assert "slow=124" in result.stdout and "bad=1" in result.stdout and "good=0" in result.stdout, result
    assert "late=0" in result.stdout
    steps = [json.loads(line) for line in (work / "steps.jsonl").read_text().splitlines()]
    assert [(s["step"], s["status"]) for s in steps] == [("slow", "timeout"), ("bad", "failed"),
                                                          ("good", "passed"), ("late", "skipped")]
    assert steps[0]["seconds"] < 10  # stopped at its 1 s cap, not after the 30 s sleep
    assert "hello" in log.read_text()
    assert (out / "summary.md").exists() and (out / "results.json").exists()


def test_run_step_never_exceeds_what_is_left_of_the_budget(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    script = f"""
source '{SCRIPT}'
PY='{sys.executable}'; WORK='{work}'; OUT='{tmp_path}'; BUDGET_TOTAL=100; DEADLINE=$(( $(date +%s) + 12 ))
run_step capped 300 '{tmp_path / "log"}' true
"""
    _bash(script)
    step = json.loads((work / "steps.jsonl").read_text())
    assert step["status"] == "passed" and step["cap"] <= 12


# ------------------------------------------------------------------------------------------ the report
def _write(work: Path, name: str, rows: list[dict], **extra) -> None:
    (work / f"{name}.json").write_text(json.dumps({"bench": name, "environment": {"gpu": "Fake GPU"},
                                                   "args": {}, "rows": rows, **extra}))


def _synthetic(work: Path, out: Path) -> None:
    (work / "meta.json").write_text(json.dumps({"gpu": "Fake GPU", "torch": "2.11.0+cu130", "commit": "abc1234"}))
    steps = [{"step": "build", "status": "passed", "rc": 0, "seconds": 41.0, "cap": 90, "note": ""},
             {"step": "tests", "status": "failed", "rc": 1, "seconds": 20.0, "cap": 50, "note": "exit 1"},
             {"step": "supernet", "status": "timeout", "rc": 124, "seconds": 110.0, "cap": 110,
              "note": "stopped at its 110 s cap"}]
    (work / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (out / "tests.log").write_text("....F\nFAILED tests/test_node_sum.py::test_x[cuda] - AssertionError\n"
                                   "1 failed, 245 passed, 3 skipped in 20.12s\n")
    _write(work, "mixed_sum", [
        {"shape": [64, 16, 32, 32], "K": 5, "fused_ms": 0.2, "eager_ms": 0.5, "eager_over_fused": 2.5},
        {"shape": [64, 64, 32, 32], "K": 8, "fused_ms": 0.4, "eager_ms": 0.6, "eager_over_fused": 1.5},
        {"shape": [256, 64, 64, 64], "K": 5, "fused_ms": 1.0, "eager_ms": 2.0, "eager_over_fused": 2.0,
         "fused_gbps": 3600.0, "copy_gbps": 4000.0, "fraction_of_copy": 0.9}])
    _write(work, "overhead", [
        {"op": "torch.add", "variant": "fwd", "us_per_call": 5.0},
        {"op": "mixed_sum (K=2)", "variant": "fwd", "us_per_call": 12.0},
        {"op": "node_sum (id+avg+id)", "variant": "fwd", "us_per_call": 20.0},
        {"op": "torch.add", "variant": "fwd+bwd", "us_per_call": 30.0},
        {"op": "mixed_sum (K=2)", "variant": "fwd+bwd", "us_per_call": 60.0}])
    _write(work, "supernet", [
        {"mode": "reference", "batch": 64, "fraction": 1.0, "step_ms": 90.0, "peak_over_resident_mib": 1600.0},
        {"mode": "fused", "batch": 64, "fraction": 1.0, "step_ms": 80.0, "peak_over_resident_mib": 320.0},
        {"mode": "fused+graph", "batch": 64, "fraction": 1.0, "step_ms": 20.0},
        {"mode": "fused+lean", "batch": 64, "fraction": 1.0, "step_ms": 10.0, "peak_over_resident_mib": 10.0},
        {"mode": "autodl", "batch": 64, "fraction": 1.0, "step_ms": 100.0},
        {"mode": "compile", "batch": 64, "fraction": 1.0, "error": "skipped: torch.compile did not finish"},
        {"mode": "reference", "batch": 256, "fraction": 1.0, "step_ms": 140.0, "peak_over_resident_mib": 6400.0},
        {"mode": "autodl", "batch": 256, "fraction": 1.0, "error": "ModuleNotFoundError: No module named 'xautodl'"}])
    _write(work, "goldnas_memory", [
        {"mode": "reference", "batch": 96, "peak": 15.3e9, "saved": 10e9, "step_s": 0.24},
        {"mode": "fused", "batch": 96, "peak": 14.1e9, "saved": 9e9, "step_s": 0.12},
        {"mode": "fused+lean", "batch": 96, "peak": 2.3e9, "saved": 1e9, "step_s": 0.18}])
    _write(work, "search", [{"algo": "goldnas", "epochs_done": 2, "wall_s": 45.0, "search_s": 30.0,
                             "images_per_s": 5000.0, "projected_protocol_s": 265.0}])


def _by_what(targets: list[gpu_report.Target]) -> dict[str, gpu_report.Target]:
    return {t.what: t for t in targets}


def test_report_puts_each_target_beside_its_measured_value(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    _synthetic(work, out)
    t = _by_what(gpu_report.evaluate_targets(gpu_report.load(work, out)))
    tests = t["CUDA tests (`-k 'cuda or graphed'`)"]
    assert tests.verdict == gpu_report.MISSED and "245 passed" in tests.measured and "1 failed" in tests.measured
    # one small shape below 2x: missed, and both values are shown
    small = t["mixed_sum fwd+bwd speed-up over eager, small shapes"]
    assert small.verdict == gpu_report.MISSED and "2.50x" in small.measured and "1.50x" in small.measured
    assert t["mixed_sum bandwidth at (256, 64, 64, 64) K=5, fraction of device copy"].verdict == gpu_report.MET
    assert "90%" in t["mixed_sum bandwidth at (256, 64, 64, 64) K=5, fraction of device copy"].measured
    assert t["node_sum fwd+bwd speed-up over eager"].verdict == gpu_report.NOT_MEASURED
    over = t["per-call host overhead, mixed_sum fwd, tiny tensors"]
    assert over.verdict == gpu_report.MET and over.measured.startswith("2.40x")
    assert t["per-call host overhead, node_sum fwd, tiny tensors"].verdict == gpu_report.MISSED  # 4x
    assert t["per-call host overhead, mixed_sum fwd+bwd, tiny tensors"].verdict == gpu_report.MET  # 2x
    no_row = t["per-call host overhead, node_sum fwd+bwd, tiny tensors"]
    assert no_row.verdict == gpu_report.NOT_MEASURED and no_row.measured == "no such row in overhead's results"
    # supernet: best fused (non-lean) is the graph mode: 90 / 20 = 4.5x; memory 320 / 1600 = 0.2x
    speed = t["NB201 supernet step, batch 64, all pairs: speed-up of the best fused mode over eager reference"]
    assert speed.verdict == gpu_report.MET and speed.measured.startswith("4.50x (fused+graph")
    mem = t["NB201 supernet step, batch 64: peak memory of fused (eager) over reference"]
    assert mem.verdict == gpu_report.MET and mem.measured.startswith("0.20x (fused ")
    peer = t["NB201 supernet step, batch 64: best fused step time over the official AutoDL code's"]
    assert peer.verdict == gpu_report.MET and peer.measured.startswith("0.20x")
    missing_peer = t["NB201 supernet step, batch 256: best fused step time over the official AutoDL code's"]
    assert missing_peer.verdict == gpu_report.NOT_MEASURED and "xautodl" in missing_peer.measured
    speed256 = t["NB201 supernet step, batch 256, all pairs: speed-up of the best fused mode over eager reference"]
    assert speed256.verdict == gpu_report.NOT_MEASURED
    search = [x for x in t.values() if x.what.startswith("`goldnas-fast search") and "GOLD-NAS" in x.what][0]
    assert search.verdict == gpu_report.MET and search.measured.startswith("265 s")
    darts = [x for x in t.values() if "DARTS-V1" in x.what][0]
    assert darts.verdict == gpu_report.NOT_MEASURED and "runs no DARTS search" in darts.measured
    gold = t["GOLD-NAS space (14 cells, C=36, batch 96): fused step speed over reference"]
    assert gold.verdict == gpu_report.MET and gold.measured.startswith("2.00x")
    assert t["GOLD-NAS space: fused + lean peak allocated"].verdict == gpu_report.MET
    assert t["GOLD-NAS space: fused + lean step time over fused"].verdict == gpu_report.MISSED  # 1.5x


def test_report_without_any_results_says_why_for_every_target(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    (work / "steps.jsonl").write_text(json.dumps({"step": "supernet", "status": "timeout", "note": "cap"}) + "\n")
    targets = gpu_report.evaluate_targets(gpu_report.load(work, out))
    assert targets and all(t.verdict == gpu_report.NOT_MEASURED for t in targets)
    assert any("step supernet timeout" in t.measured for t in targets)
    assert any("step tests did not run" in t.measured for t in targets)


def test_report_main_writes_few_files_and_prints_the_summary_last(tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    _synthetic(work, out)
    assert gpu_report.main(["--work", str(work), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("GPU check summary: gpu Fake GPU")
    assert any(line.strip().startswith("supernet") and "timeout" in line for line in printed)
    assert any(line.strip().startswith("tests") and "1 failed" in line for line in printed)
    assert printed[-1].startswith("targets met ")
    assert len(list(out.iterdir())) <= 8
    results = json.loads((out / "results.json").read_text())
    assert results["tests"]["failed_ids"] == ["tests/test_node_sum.py::test_x[cuda]"]
    assert {t["verdict"] for t in results["targets"]} == {gpu_report.MET, gpu_report.MISSED, gpu_report.NOT_MEASURED}
    md = (out / "summary.md").read_text()
    assert "## Targets (issues 14 and 16)" in md and "| issue | what | target | measured | verdict |" in md
    assert "## NB201 supernet training step" in md
    supernet_table = md.split("## NB201 supernet training step")[1].split("##")[0]
    assert "speedup_vs_reference" in supernet_table and "| 4.5 |" in supernet_table  # 90 / 20, derived
    header = next(line for line in supernet_table.splitlines() if line.startswith("| batch"))
    assert header.endswith("| error |")  # the error column exists for the skipped compile row


def test_report_rejects_a_missing_work_folder(tmp_path):
    with pytest.raises(SystemExit):
        gpu_report.main(["--work", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])


def test_report_does_not_count_skipped_cuda_tests_as_passing(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    (out / "tests.log").write_text("1 passed, 245 skipped, 812 deselected in 6.70s\n")
    target = gpu_report.evaluate_targets(gpu_report.load(work, out))[0]
    assert target.verdict == gpu_report.MISSED and "more skipped than passed" in target.measured


@pytest.mark.parametrize("text, expected", [
    ("13 failed, 233 passed in 20.12s", {"failed": 13, "passed": 233}),
    ("===== 246 passed, 2 warnings in 19.0s =====", {"passed": 246, "warnings": 2}),
    ("1 passed, 1 error in 0.5s", {"passed": 1, "errors": 1}),
    ("collected 3 items\n..", {}),
])
def test_parse_pytest_reads_the_final_summary_line(text, expected):
    parsed = gpu_report.parse_pytest(text)
    parsed.pop("failed_ids", None)
    assert parsed == expected


def test_cells_format_numbers_readably():
    assert gpu_report._cell(1811.4) == "1,811"
    assert gpu_report._cell(84.66) == "84.7"
    assert gpu_report._cell(0.40412) == "0.404"
    assert gpu_report._cell(float("nan")) == "-"
    assert gpu_report._cell(None) == "-"
    assert gpu_report._cell([64, 16, 32, 32]) == "(64, 16, 32, 32)"
    assert gpu_report._cell("a|b") == "a/b"


# ------------------------------------------------------------------------------------------ --json plumbing
def test_write_json_replaces_non_finite_numbers_and_keeps_rows(tmp_path):
    import argparse

    from common import write_json

    path = tmp_path / "x.json"
    write_json(path, "demo", "cpu", argparse.Namespace(json=path, steps=3),
               [{"a": 1.0, "b": float("nan"), "c": [float("inf"), 2]}], shape=[1, 2])
    payload = json.loads(path.read_text())  # strict JSON: NaN would not parse with parse_constant raising
    assert payload["bench"] == "demo" and payload["rows"] == [{"a": 1.0, "b": None, "c": [None, 2]}]
    assert payload["args"] == {"json": str(path), "steps": 3} and payload["shape"] == [1, 2]
    assert payload["environment"]["device"] == "cpu" and payload["environment"]["torch"] == torch.__version__
    assert not list(tmp_path.glob("*.tmp"))
    write_json(None, "demo", "cpu", argparse.Namespace(), [])  # no path: nothing written, no error


def test_search_summary_projects_the_protocol_from_the_last_epoch(tmp_path):
    from bench_search import PROTOCOL_EPOCHS, PROTOCOL_IMAGES, summarize

    (tmp_path / "log.jsonl").write_text(json.dumps({"epoch": 1, "seconds": 20.0, "surviving": 24, "arch": "a"})
                                        + "\n" + json.dumps({"epoch": 2, "seconds": 30.0, "surviving": 20,
                                                             "arch": "b"}) + "\n")
    row = summarize(tmp_path, wall=40.0, per_epoch=9984)
    assert row["epoch_s"] == [20.0, 10.0] and row["search_s"] == 30.0
    assert math.isclose(row["images_per_s"], 998.4)
    assert math.isclose(row["projected_protocol_s"], 10.0 + PROTOCOL_EPOCHS * PROTOCOL_IMAGES / 998.4)
    assert row["final_arch"] == "b" and row["surviving"] == [24, 20]
    assert summarize(tmp_path / "none", wall=5.0, per_epoch=10) == {"epochs_done": 0, "wall_s": 5.0,
                                                                    "images_per_epoch": 10}


# ------------------------------------------------------------------------------------------ bench_supernet on CPU
def _supernet(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess,
                                                                                      dict]:
    out = tmp_path / "supernet.json"
    cmd = [sys.executable, str(REPO / "bench" / "bench_supernet.py"), "--device", "cpu", "--C", "4", "--N", "1",
           "--batch", "2", "--steps", "1", "--warmup", "0", "--fractions", "1", "--threads", "1",
           "--compile-isolation", "process", "--json", str(out), *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-2000:]
    return result, json.loads(out.read_text())


def test_supernet_runs_compile_in_a_child_process_and_merges_its_row(tmp_path):
    # TORCHDYNAMO_DISABLE makes torch.compile a no-op: the isolation plumbing runs without minutes of compiling
    result, payload = _supernet(tmp_path, "--modes", "reference", "compile", "--compile-cap", "240",
                                env={"TORCHDYNAMO_DISABLE": "1"})
    rows = {r["mode"]: r for r in payload["rows"]}
    assert rows["reference"]["step_ms"] > 0 and "isolated" not in rows["reference"]
    assert rows["compile"]["isolated"] is True and rows["compile"]["step_ms"] > 0
    assert rows["compile"]["saved_mib"] == pytest.approx(rows["reference"]["saved_mib"])
    assert payload["bench"] == "supernet" and payload["environment"]["device"] == "cpu"
    assert "| compile | 100% (24) |" in result.stdout


def test_supernet_skips_a_compile_that_outlasts_its_cap(tmp_path):
    result, payload = _supernet(tmp_path, "--batch", "2", "3", "--modes", "compile", "--compile-cap", "1")
    first, second = payload["rows"]
    assert "did not finish within the 1 s cap" in first["error"]
    assert "at an earlier batch" in second["error"]
    assert "step_ms" not in first and "step_ms" not in second
