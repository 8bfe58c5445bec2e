"""``goldnas-fast search`` end to end on tiny supernets: outputs, resume exactness, bad input, stop reasons."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from goldnas_fast.cli import main
from goldnas_fast.nb201.arch import parse_arch
from goldnas_fast.nb201.benchmark import Benchmark
from goldnas_fast.runs import RunDir

REPO = Path(__file__).resolve().parents[1]
TINY_NB201 = ["--C", "4", "--N", "1", "--max-train", "64", "--batch-size", "16"]
TINY_GOLDNAS = ["--space", "goldnas", "--layers", "3", "--C", "4", "--max-train", "32", "--batch-size", "8"]
NB201_PAIRS = 6 * 4  # six edges, four prunable operators each ('none' is what an emptied edge becomes)
STOP_REASONS = {"one_op_per_edge", "flops_min", "exhausted", "custom", "max_epochs", "epoch_limit"}
LOG_KEYS_GOLDNAS = {"epoch", "loss", "accuracy", "lambda", "surviving", "pruned", "flops_m", "arch", "stop",
                    "stop_reason", "seconds"}


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    return Benchmark()


def search(out: Path, *args: str) -> int:
    return main(["search", "--out", str(out), *args])


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]


def read_result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (empty when ``path`` does not exist)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} missing"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def assert_nb201_entry(entry: dict, bench: Benchmark) -> None:
    """``entry`` names a table architecture and carries its FLOPs and table accuracies."""
    parse_arch(entry["arch"])
    row = bench.query(entry["arch"])
    assert entry["index"] == row["index"]
    assert entry["flops_m"] == pytest.approx(row["flops_m"])
    assert entry["cifar10_test_acc_200"] == pytest.approx(row["c10_test_acc_200"])
    for key in ("cifar10_valid_acc_200", "cifar100_test_acc_200", "imagenet16_test_acc_200", "params_m"):
        assert isinstance(entry[key], float)


# --------------------------------------------------------------------------------------------- end to end
def test_goldnas_nb201_end_to_end(tmp_path: Path, capsys, bench: Benchmark) -> None:
    out = tmp_path / "run"
    assert search(out, *TINY_NB201, "--epochs", "6", "--lambda0", "1.0") == 0
    printed = capsys.readouterr().out.strip().splitlines()

    log = read_log(out)
    assert 1 <= len(log) <= 6
    assert [r["epoch"] for r in log] == list(range(1, len(log) + 1))
    for r in log:
        assert LOG_KEYS_GOLDNAS <= set(r), sorted(LOG_KEYS_GOLDNAS - set(r))
        assert np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 100 and r["flops_m"] > 0
        parse_arch(r["arch"])
    assert log[0]["surviving"] <= NB201_PAIRS
    assert sum(r["pruned"] for r in log) > 0, "a large lambda0 must prune within six epochs"
    assert log[-1]["surviving"] < NB201_PAIRS
    assert log[-1]["surviving"] == NB201_PAIRS - sum(r["pruned"] for r in log)
    assert all(b["surviving"] <= a["surviving"] for a, b in zip(log, log[1:]))
    assert log[-1]["flops_m"] < log[0]["flops_m"]
    assert [r["lambda"] for r in log[1:]] == [r["next_lambda"] for r in log[:-1]]

    assert (out / "config.json").is_file()
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == len(log)
    assert state["algo"]["controller"]["alive"].count(True) == log[-1]["surviving"]

    result = read_result(out)
    assert result["space"] == "nb201" and result["algo"] == "goldnas"
    assert result["final_arch"] == log[-1]["arch"]
    assert_nb201_entry({**result["final"], "arch": result["final_arch"]}, bench)
    assert [(r["epoch"], r["arch"]) for r in result["recorded"]] == [(r["epoch"], r["arch"]) for r in log
                                                                     if r["recorded"]]
    for rec in result["recorded"]:
        assert_nb201_entry(rec, bench)
    assert all(r["stop_reason"] is None for r in log[:-1])
    assert result["search_seconds"] > 0 and result["epochs_run"] == len(log)
    assert result["stop_reason"] in STOP_REASONS
    if log[-1]["stop"]:
        assert result["stop_reason"] == log[-1]["stop_reason"] != "epoch_limit"
    else:
        assert result["stop_reason"] == "epoch_limit" and len(log) == 6
    assert result["pareto"], "the final architecture at least is a Pareto candidate"
    assert_png(out / "pareto.png")

    acc = bench.query(result["final_arch"])["c10_test_acc_200"]
    assert result["final_arch"] in printed[-1] and f"{acc:.2f}%" in printed[-1], printed[-1]
    assert "CIFAR-10 test accuracy" in printed[-1]


def test_darts_end_to_end(tmp_path: Path, bench: Benchmark) -> None:
    out = tmp_path / "run"
    assert search(out, "--algo", "darts", *TINY_NB201, "--epochs", "2") == 0
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2]
    for r in log:
        assert np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 100 and r["flops_m"] > 0
        parse_arch(r["arch"])
    assert log[0]["lr"] > log[1]["lr"], "cosine schedule"
    result = read_result(out)
    assert result["algo"] == "darts" and result["final_arch"] == log[-1]["arch"]
    assert_nb201_entry({**result["final"], "arch": result["final_arch"]}, bench)
    # the trajectory: the first epoch's architecture and every change of the argmax architecture
    changes = [r for i, r in enumerate(log) if i == 0 or r["arch"] != log[i - 1]["arch"]]
    assert [(r["epoch"], r["arch"]) for r in result["recorded"]] == [(r["epoch"], r["arch"]) for r in changes]
    for rec in result["recorded"]:
        assert_nb201_entry(rec, bench)
    assert result["stop_reason"] == "epoch_limit" and result["epochs_run"] == 2
    assert result["search_seconds"] > 0
    assert_png(out / "pareto.png")


@pytest.mark.parametrize("algo", ["random", "evolution"])
def test_multitrial_end_to_end(tmp_path: Path, algo: str, bench: Benchmark) -> None:
    out = tmp_path / "run"
    assert search(out, "--algo", algo, "--evaluations", "40", "--seed", "3") == 0
    result = read_result(out)
    assert result["algo"] == algo and result["evaluated"] == 40
    recorded = result["recorded"]
    assert recorded, "the first evaluation is always an incumbent"
    signals = [r["signal_cifar10_valid_acc_12"] for r in recorded]
    assert signals == sorted(signals) and len(set(signals)) == len(signals)
    assert [r["evaluation"] for r in recorded] == sorted(r["evaluation"] for r in recorded)
    for rec in recorded:
        assert_nb201_entry(rec, bench)
        assert rec["signal_cifar10_valid_acc_12"] == pytest.approx(bench.get(rec["arch"], "cifar10-valid-12"))
    assert result["final_arch"] == recorded[-1]["arch"]
    assert_nb201_entry({**result["final"], "arch": result["final_arch"]}, bench)
    assert result["search_seconds"] >= 0
    assert_png(out / "pareto.png")
    # same seed, same search
    again = tmp_path / "again"
    assert search(again, "--algo", algo, "--evaluations", "40", "--seed", "3") == 0
    assert read_result(again)["recorded"] == recorded


def test_goldnas_space_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert search(out, *TINY_GOLDNAS, "--epochs", "2", "--flops-min", "0.5") == 0
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2]
    for r in log:
        assert LOG_KEYS_GOLDNAS <= set(r)
        assert np.isfinite(r["loss"]) and r["flops_m"] > 0 and r["surviving"] > 0
        assert len(r["arch"]["cells"]) == 3
    result = read_result(out)
    assert result["space"] == "goldnas" and result["algo"] == "goldnas"
    assert result["final_genotype"] == log[-1]["arch"]
    assert result["final_flops_m"] == pytest.approx(log[-1]["flops_m"])
    assert result["stop_reason"] == "epoch_limit" and result["epochs_run"] == 2
    for rec in result["recorded"]:
        assert rec["flops_m"] > 0 and "genotype" in rec
    assert result["search_seconds"] > 0
    assert_png(out / "pareto.png")


def test_goldnas_space_flops_min_stops(tmp_path: Path) -> None:
    """The default FLOPs_min (240M) is far above a tiny supernet: the search stops after one epoch."""
    out = tmp_path / "run"
    assert search(out, *TINY_GOLDNAS, "--epochs", "3") == 0
    log = read_log(out)
    assert len(log) == 1 and log[0]["stop"] and log[0]["stop_reason"] == "flops_min"
    assert read_result(out)["stop_reason"] == "flops_min"


def test_stop_reason_is_the_controllers(tmp_path: Path, capsys) -> None:
    """A FLOPs minimum above the supernet stops after the first epoch, and log, result and output say why."""
    out = tmp_path / "run"
    assert search(out, *TINY_NB201, "--epochs", "4", "--flops-min", "1e6") == 0
    printed = capsys.readouterr().out
    log = read_log(out)
    assert len(log) == 1 and log[0]["stop"] and log[0]["stop_reason"] == "flops_min"
    assert read_result(out)["stop_reason"] == "flops_min"
    assert "stop: flops_min" in printed


def test_nb201_result_of_recorded_architectures(tmp_path: Path, bench: Benchmark) -> None:
    """result.json carries table facts for every recorded architecture, and the front is non-dominated."""
    from goldnas_fast.search.results import finish_nb201_result

    best = bench.arch(bench.best("cifar10-test-200")[0])
    archs = ["|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
             "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|",
             "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"]
    run_dir = RunDir(tmp_path / "run", "search", {"algo": "goldnas"})
    result = finish_nb201_result(run_dir, {"algo": "goldnas"}, best,
                                 [{"epoch": 3 * i + 1, "arch": a} for i, a in enumerate(archs)], 1.5,
                                 extra={"stop_reason": "one_op_per_edge"})
    assert read_result(run_dir.path) == json.loads(json.dumps(result))
    assert [r["arch"] for r in result["recorded"]] == archs
    for rec in result["recorded"]:
        assert_nb201_entry(rec, bench)
    candidates = result["recorded"] + [result["final"]]
    for p in result["pareto"]:
        assert not any(c["cifar10_test_acc_200"] >= p["cifar10_test_acc_200"] and c["flops_m"] <= p["flops_m"]
                       and (c["cifar10_test_acc_200"], c["flops_m"]) != (p["cifar10_test_acc_200"], p["flops_m"])
                       for c in candidates)
    off_front = [c for c in candidates if c["arch"] not in {p["arch"] for p in result["pareto"]}]
    for c in off_front:
        assert any(p["cifar10_test_acc_200"] >= c["cifar10_test_acc_200"] and p["flops_m"] <= c["flops_m"]
                   for p in result["pareto"])
    assert result["final"]["cifar10_test_acc_200"] == pytest.approx(bench.best("cifar10-test-200")[1])
    assert_png(run_dir.path / "pareto.png")


# ------------------------------------------------------------------------------------------ resume
class Interrupt:
    """Raises KeyboardInterrupt on the ``at``-th checkpoint save, before or after writing it, while active."""

    def __init__(self, monkeypatch, at: int, before_save: bool) -> None:
        self.calls, self.active = 0, True
        original = RunDir.save_checkpoint

        def save(run_dir: RunDir, state) -> None:
            self.calls += 1
            hit = self.active and self.calls == at
            if hit and before_save:  # killed after logging epoch `at`, before its checkpoint
                raise KeyboardInterrupt
            original(run_dir, state)
            if hit:
                raise KeyboardInterrupt

        monkeypatch.setattr(RunDir, "save_checkpoint", save)


def assert_same_state(a, b, where: str = "state") -> None:
    """Bit-identical nested checkpoint states (tensors compared with ``torch.equal`` and dtype)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs (max abs diff {(a.double() - b.double()).abs().max()})"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def strip_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def with_dropout(monkeypatch) -> None:
    """Makes every training step draw from torch's global RNG (input dropout), as dropout or drop-path would."""
    from goldnas_fast.spaces.adapter import SearchSpace

    original = SearchSpace.loss

    def loss(self, images, labels, module=None):
        return original(self, torch.nn.functional.dropout(images, 0.2, training=True), labels, module)

    monkeypatch.setattr(SearchSpace, "loss", loss)


RESUME_ARGS = {
    "goldnas": [*TINY_NB201, "--lambda0", "1.0", "--epochs", "6", "--seed", "1"],
    "darts": [*TINY_NB201, "--algo", "darts", "--epochs", "3", "--seed", "1"],
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The uninterrupted run of each ``RESUME_ARGS`` entry (made once per module, with the dropout patch)."""
    runs: dict[str, Path] = {}

    def get(algo: str) -> Path:
        if algo not in runs:
            out = tmp_path_factory.mktemp("full") / algo
            with pytest.MonkeyPatch.context() as mp:
                with_dropout(mp)
                assert search(out, *RESUME_ARGS[algo]) == 0
            runs[algo] = out
        return runs[algo]

    return get


RESUME_CASES = [  # (algo, interrupted at epoch k, before its checkpoint was written)
    pytest.param("goldnas", 2, False, id="goldnas-k2"),
    pytest.param("goldnas", 5, True, id="goldnas-k5-before-checkpoint"),
    pytest.param("darts", 1, True, id="darts-k1-before-first-checkpoint"),
    pytest.param("darts", 2, False, id="darts-k2"),
]


@pytest.mark.parametrize(("algo", "k", "before_save"), RESUME_CASES)
def test_resume_is_bit_exact(tmp_path: Path, monkeypatch, uninterrupted, algo, k, before_save) -> None:
    """Interrupted after epoch ``k`` (checkpoint written, or epoch logged but not checkpointed), then resumed
    in a process whose global RNG state differs: the log, the final architecture and every tensor of the
    final state (weights, gates, optimizer buffers) equal an uninterrupted run's, bit for bit, on CPU.
    Every step also draws from the global RNG (input dropout), as dropout or drop-path would."""
    args = RESUME_ARGS[algo]
    full, cut = uninterrupted(algo), tmp_path / "cut"
    with_dropout(monkeypatch)
    interrupt = Interrupt(monkeypatch, k, before_save)
    assert search(cut, *args) == 130  # KeyboardInterrupt: the CLI keeps the last checkpoint
    interrupt.active = False
    done = k - 1 if before_save else k
    if done:
        assert torch.load(cut / "checkpoint.pt", weights_only=False)["epoch"] == done
    else:
        assert not (cut / "checkpoint.pt").exists()
    assert len(read_log(cut)) == k  # the interrupted epoch may have been logged without its checkpoint
    assert not (cut / "result.json").exists()
    torch.manual_seed(12345)  # a resumed process does not start from the same global RNG state
    np.random.seed(54321)
    assert search(cut, *args, "--resume") == 0

    log = read_log(full)
    assert len(log) > k
    if algo == "goldnas":
        assert sum(r["pruned"] for r in log) > 0
    assert read_result(cut)["final_arch"] == read_result(full)["final_arch"]
    assert strip_times(read_log(cut)) == strip_times(log)
    a = torch.load(full / "checkpoint.pt", weights_only=False)
    b = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert a["epoch"] == b["epoch"]
    assert_same_state(a["algo"], b["algo"], "algo")
    assert_same_state(strip_times(a["history"]), strip_times(b["history"]), "history")


def test_resume_after_finish_changes_nothing_but_result(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*TINY_NB201, "--algo", "darts", "--epochs", "1"]
    assert search(out, *args) == 0
    before = snapshot(out)
    assert search(out, *args, "--resume") == 0
    after = snapshot(out)
    assert before["log.jsonl"] == after["log.jsonl"] and before["checkpoint.pt"] == after["checkpoint.pt"]
    assert read_result(out)["final_arch"] == json.loads(before["result.json"])["final_arch"]


# ------------------------------------------------------------------------------------------ bad input
def garbage_npz(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip archive\x00\x01\x02" * 10)
    return path


def wrong_npz(tmp_path: Path) -> Path:
    path = tmp_path / "wrong.npz"
    np.savez(path, images=np.zeros((4, 8, 8), np.float32), labels=np.zeros(4, np.int64))
    return path


BAD_ARGS = {
    "missing-data": lambda t: ["--data", str(t / "no-such-dir"), *TINY_NB201],
    "corrupt-npz": lambda t: ["--data", str(garbage_npz(t)), *TINY_NB201],
    "wrong-npz": lambda t: ["--data", str(wrong_npz(t)), *TINY_NB201],
    "unknown-space": lambda t: ["--space", "nb301"],
    "unknown-algo": lambda t: ["--algo", "enas"],
    "goldnas-space-darts": lambda t: ["--space", "goldnas", "--algo", "darts"],
    "batch-larger-than-data": lambda t: ["--C", "4", "--N", "1", "--max-train", "8", "--batch-size", "16"],
    "darts-batch-larger-than-half": lambda t: ["--algo", "darts", "--C", "4", "--N", "1", "--max-train", "24",
                                               "--batch-size", "16"],
    "zero-epochs": lambda t: [*TINY_NB201, "--epochs", "0"],
    "evolution-too-few": lambda t: ["--algo", "evolution", "--evaluations", "5"],
    "bad-lambda0": lambda t: [*TINY_NB201, "--lambda0", "-1"],
    "bad-xi": lambda t: [*TINY_NB201, "--xi-min", "0.2", "--xi-max", "0.1"],
    "bad-ops": lambda t: ["--space", "goldnas", "--ops", "skip_connect,warp_drive", "--layers", "3", "--C", "4"],
    "bad-device": lambda t: [*TINY_NB201, "--device", "tpu"],
    "negative-seed": lambda t: [*TINY_NB201, "--seed", "-1"],
    "bad-lr": lambda t: [*TINY_NB201, "--lr-alpha", "-1"],
    "bad-c0": lambda t: [*TINY_NB201, "--c0", "1"],
}


def assert_one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip() and "%|" not in ln]
    assert len(lines) == 1 and lines[0].startswith("goldnas-fast search: error: "), err
    return lines[0]


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
def test_bad_input_fails_cleanly(tmp_path: Path, capsys, case: str) -> None:
    args = BAD_ARGS[case](tmp_path)
    out = tmp_path / "run"
    try:
        rc = search(out, *args)
    except SystemExit as exc:  # argparse rejects choices with exit 2 itself
        rc = exc.code
    assert_one_line_error(capsys, rc)
    assert not out.exists(), f"a failed run must not leave a run directory: {sorted(snapshot(out))}"


def tiny_run(tmp_path: Path, name: str = "run", *extra: str) -> Path:
    out = tmp_path / name
    assert search(out, *TINY_NB201, "--algo", "darts", "--epochs", "1", *extra) == 0
    return out


def test_out_dir_with_another_run_is_refused(tmp_path: Path, capsys) -> None:
    out = tiny_run(tmp_path)
    capsys.readouterr()
    before = snapshot(out)
    for args in ([*TINY_NB201, "--algo", "darts", "--epochs", "2"],            # another configuration
                 [*TINY_NB201, "--algo", "darts", "--epochs", "2", "--resume"],  # resume it as another one
                 [*TINY_NB201, "--algo", "darts", "--epochs", "1"],            # this run, without --resume
                 [*TINY_NB201, "--epochs", "1", "--seed", "7"],
                 ["--algo", "random", "--evaluations", "10"]):
        line = assert_one_line_error(capsys, search(out, *args))
        assert str(out) in line
        assert snapshot(out) == before, f"{args} changed files in the run directory"


def test_out_dir_with_unrelated_files_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    before = snapshot(out)
    for extra in ([], ["--resume"]):
        assert_one_line_error(capsys, search(out, *TINY_NB201, "--epochs", "1", *extra))
        assert snapshot(out) == before
    unreadable = tmp_path / "broken"
    unreadable.mkdir()
    (unreadable / "config.json").write_text("{not json")
    before = snapshot(unreadable)
    assert_one_line_error(capsys, search(unreadable, *TINY_NB201, "--epochs", "1", "--resume"))
    assert snapshot(unreadable) == before
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert_one_line_error(capsys, search(a_file, *TINY_NB201, "--epochs", "1"))
    assert a_file.read_text() == "x"
    assert_one_line_error(capsys, search(a_file / "below", *TINY_NB201, "--epochs", "1"))  # cannot be created
    assert a_file.read_text() == "x"


def test_checkpoint_from_another_configuration_is_refused(tmp_path: Path, capsys) -> None:
    mine = tiny_run(tmp_path, "mine")
    other = tiny_run(tmp_path, "other", "--seed", "5")
    (mine / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    capsys.readouterr()
    before = snapshot(mine)
    line = assert_one_line_error(capsys, search(mine, *TINY_NB201, "--algo", "darts", "--epochs", "1", "--resume"))
    assert "checkpoint" in line
    assert snapshot(mine) == before


def test_corrupt_checkpoint_is_refused(tmp_path: Path, capsys) -> None:
    out = tiny_run(tmp_path)
    (out / "checkpoint.pt").write_bytes(b"\x00garbage")
    capsys.readouterr()
    before = snapshot(out)
    line = assert_one_line_error(capsys, search(out, *TINY_NB201, "--algo", "darts", "--epochs", "1", "--resume"))
    assert "checkpoint" in line
    assert snapshot(out) == before


def test_console_error_is_one_line(tmp_path: Path) -> None:
    """The real process: exit status 2 and a single stderr line, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "goldnas_fast.cli", "search", "--data", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(tmp_path / "nope") in proc.stderr
    assert not (tmp_path / "run").exists()
