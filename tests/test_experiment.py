"""``goldnas-fast experiment``: the tiny study end to end, tables from result.json, resume, bad input.

The searches run as real ``goldnas-fast search`` subprocesses (tiny supernets, table methods with few
evaluations); the study is shared by the tests of this module to keep the runtime modest.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from goldnas_fast.cli import main
from goldnas_fast.experiment.plots import front_indices, table_front
from goldnas_fast.experiment.report import mean_std, splice
from goldnas_fast.nb201.benchmark import Benchmark

ROW = re.compile(r"^\| (?P<label>[^|]+?) \| (?P<seeds>[^|]+?) \| (?P<c10>[^|]+?) \| (?P<c100>[^|]+?) \| "
                 r"(?P<in16>[^|]+?) \|")


def experiment(*args: str) -> int:
    return main(["experiment", *args])


def method_row(report: str, label: str) -> dict[str, str]:
    for line in report.splitlines():
        m = ROW.match(line)
        if m and m["label"] == label:
            return m.groupdict()
    raise AssertionError(f"no row {label!r} in:\n{report}")


def result(study: Path, name: str) -> dict:
    return json.loads((study / "runs" / name / "result.json").read_text())


def expected_cell(study: Path, names: list[str], key: str) -> str:
    m, s = mean_std([result(study, n)["final"][key] for n in names])
    return f"{m:.2f} ± {s:.2f}"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A tiny study: table methods with seeds 0 and 1, supernet methods with seed 0 only."""
    out = tmp_path_factory.mktemp("exp") / "study"
    assert experiment("nb201", "--tiny", "--out", str(out), "--seeds", "0,1", "--methods", "random,evolution") == 0
    assert experiment("nb201", "--tiny", "--out", str(out), "--seeds", "0", "--methods", "goldnas,darts",
                      "--jobs", "2") == 0
    return out


# --------------------------------------------------------------------------------------------- end to end
def test_tiny_study_writes_tables_from_results(study: Path) -> None:
    report = (study / "report.md").read_text()
    for name in ("random-s0", "random-s1", "evolution-s0", "evolution-s1", "goldnas-s0", "darts-s0"):
        res = result(study, name)
        assert res["algo"] == name.split("-")[0]
        assert f"| {name} | {res['final']['index']} |" in report
    row = method_row(report, "random search")
    assert row["seeds"] == "2/2"
    assert row["c10"] == expected_cell(study, ["random-s0", "random-s1"], "cifar10_test_acc_200")
    assert row["c100"] == expected_cell(study, ["random-s0", "random-s1"], "cifar100_test_acc_200")
    assert row["in16"] == expected_cell(study, ["random-s0", "random-s1"], "imagenet16_test_acc_200")
    assert method_row(report, "GOLD-NAS (Algorithm 1)")["seeds"] == "1/2"  # seed 1 was never asked for
    assert "| goldnas-s1 | not yet run |" in report
    bench = Benchmark()
    c10, c100, in16 = (bench.best(m) for m in ("cifar10-test-200", "cifar100-test-200", "imagenet16-test-200"))
    assert c10[0] == 6111 and round(c10[1], 2) == 94.37
    opt = method_row(report, "**optimum** (table maximum per column)")
    assert opt["c10"] == f"{c10[1]:.2f} (arch 6111)" and opt["c100"] == f"{c100[1]:.2f} (arch {c100[0]})"
    assert (study / "figures" / "tiny-front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![accuracy vs FLOPs](figures/tiny-front.png)" in report
    assert "![search trajectories](figures/tiny-trajectories.png)" in report
    assert (study / "figures" / "tiny-trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((study / "meta" / "goldnas-s0.json").read_text())
    assert meta["device"] == "cpu" and meta["attempts"][-1]["returncode"] == 0
    assert "--device" in meta["command"] and "--resume" not in meta["command"]


def test_changed_result_changes_the_table_and_finished_runs_are_skipped(study: Path, capsys) -> None:
    path = study / "runs" / "random-s0" / "result.json"
    original = path.read_text()
    try:
        res = json.loads(original)
        res["final"]["cifar10_test_acc_200"] = 12.5
        path.write_text(json.dumps(res))
        before = {p: p.stat().st_mtime_ns for p in study.glob("runs/*/result.json")}
        assert experiment("nb201", "--tiny", "--out", str(study), "--seeds", "0") == 0
        printed = capsys.readouterr().out
        for name in ("random-s0", "evolution-s0", "goldnas-s0", "darts-s0"):  # all finished: nothing runs
            assert f"skip {name}: finished" in printed
        assert "start " not in printed
        assert {p: p.stat().st_mtime_ns for p in before} == before
        report = (study / "report.md").read_text()
        other = result(study, "random-s1")["final"]["cifar10_test_acc_200"]
        m, s = mean_std([12.5, other])
        assert method_row(report, "random search")["c10"] == f"{m:.2f} ± {s:.2f}"
    finally:
        path.write_text(original)
    assert experiment("report", "--out", str(study)) == 0
    report = (study / "report.md").read_text()
    assert method_row(report, "random search")["c10"] == expected_cell(study, ["random-s0", "random-s1"],
                                                                        "cifar10_test_acc_200")


def test_unfinished_run_is_resumed(study: Path, capsys) -> None:
    (study / "runs" / "evolution-s1" / "result.json").unlink()  # config.json stays: an interrupted run
    assert experiment("nb201", "--tiny", "--out", str(study), "--seeds", "1", "--methods", "evolution") == 0
    assert "start evolution-s1 (resume)" in capsys.readouterr().out
    assert result(study, "evolution-s1")["algo"] == "evolution"
    meta = json.loads((study / "meta" / "evolution-s1.json").read_text())
    assert meta["attempts"][-1]["resumed"] is True and "--resume" in meta["command"]


def test_killed_runner_resumes(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "goldnas_fast.cli", "experiment", "nb201", "--tiny", "--out", str(out),
           "--methods", "random", "--seeds", "0,1", "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = out / "runs" / "random-s0" / "result.json"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.exists(), proc.communicate()[0] if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert not (out / "runs" / "random-s1" / "result.json").exists()
    stamp = first.stat().st_mtime_ns
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "skip random-s0: finished" in rerun.stdout
    assert first.stat().st_mtime_ns == stamp
    assert all((out / "runs" / f"random-s{s}" / "result.json").is_file() for s in range(2))


# --------------------------------------------------------------------------------------------- bad input
def _one_line_error(capsys, code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("goldnas-fast experiment: error:"), err
    return err


@pytest.mark.parametrize("args, needle", [
    (["nb201", "--tiny", "--jobs", "0"], "--jobs"),
    (["nb201", "--tiny", "--seeds", "0,x"], "--seeds"),
    (["nb201", "--tiny", "--seeds", "1,1"], "--seeds"),
    (["nb201", "--tiny", "--methods", "darts,gdas"], "--methods"),
    (["nb201", "--tiny", "--device", "tpu"], "--device"),
    (["nb201"], "--data is required"),
    (["nb201", "--data", "/nonexistent/cifar"], "--data"),
    (["nb201", "--demo", "--data", "."], "--demo"),
    (["report"], "study.json"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys, args: list[str], needle: str) -> None:
    err = _one_line_error(capsys, experiment(*args, "--out", str(tmp_path / "o")))
    assert needle in err


def test_data_must_be_the_full_training_set(tmp_path: Path, capsys) -> None:
    from goldnas_fast.data.cifar import sample_path

    err = _one_line_error(capsys, experiment("nb201", "--data", str(sample_path()), "--out", str(tmp_path / "o"),
                                             "--methods", "darts"))
    assert "50000" in err and "--data" in err


def test_out_holding_another_study_or_files_is_refused(study: Path, tmp_path: Path, capsys) -> None:
    err = _one_line_error(capsys, experiment("nb201", "--demo", "--out", str(study), "--methods", "random"))
    assert "another study" in err and "scale" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    err = _one_line_error(capsys, experiment("nb201", "--tiny", "--out", str(tmp_path / "full")))
    assert "not empty" in err
    (tmp_path / "afile").write_text("")
    assert "not a directory" in _one_line_error(capsys, experiment("nb201", "--tiny", "--out", str(tmp_path / "afile")))


def test_broken_result_json_is_named(study: Path, tmp_path: Path, capsys) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns(".lock"))
    (copy / "runs" / "darts-s0" / "result.json").write_text(json.dumps({"algo": "darts"}))
    err = _one_line_error(capsys, experiment("report", "--out", str(copy)))
    assert "darts-s0/result.json" in err and "final" in err


# --------------------------------------------------------------------------------------------- pieces
def test_front_indices_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    acc = rng.integers(0, 20, 300).astype(float)
    flops = rng.integers(0, 20, 300).astype(float)
    front = front_indices(acc, flops)
    dominated = {i for i in range(300) for j in range(300)
                 if acc[j] >= acc[i] and flops[j] <= flops[i] and (acc[j] > acc[i] or flops[j] < flops[i])}
    firsts = {}
    for i in range(300):
        firsts.setdefault((acc[i], flops[i]), i)
    assert sorted(front) == sorted(i for i in range(300) if i not in dominated and firsts[acc[i], flops[i]] == i)
    acc_t, flops_t, front_t = table_front()
    assert 6111 in front_t and len(front_t) <= 28  # 28 distinct FLOPs values in NB201
    assert list(flops_t[front_t]) == sorted(flops_t[front_t])


def test_splice_keeps_the_text_around(tmp_path: Path) -> None:
    path = tmp_path / "R.md"
    path.write_text("# Results\n\nhand-written\n")
    splice(path, "nb201", "table one\n")
    splice(path, "other", "table two\n")
    splice(path, "nb201", "table one, again\n")
    text = path.read_text()
    assert text.startswith("# Results\n\nhand-written\n")
    assert "table one, again" in text and "table one\n" not in text and "table two" in text
    path.write_text("<!-- BEGIN generated: nb201 -->\nno end\n")
    with pytest.raises(ValueError, match="unbalanced"):
        splice(path, "nb201", "x")


def test_goldnas_space_tiny(tmp_path: Path, capsys) -> None:
    from goldnas_fast.data.cifar import load_cifar10

    sample = load_cifar10(None, max_train=32, max_test=0)  # no test images: the short training evaluates 8
    data = tmp_path / "train32.npz"
    np.savez(data, images=sample.train_images, labels=sample.train_labels)
    out = tmp_path / "space"
    assert experiment("goldnas-space", "--tiny", "--data", str(data), "--out", str(out)) == 0
    report = (out / "report.md").read_text()
    search = result(out, "search")
    assert search["space"] == "goldnas"
    n = len(search["recorded"]) + 1
    assert f"{n} architectures" in report
    tags = ("smallest", "largest") if (out / "runs" / "train-largest").exists() else ("smallest",)
    for tag in tags:
        res = result(out, f"train-{tag}")
        assert res["epochs_done"] == 1 and res["space"] == "goldnas"
        assert f"| train-{tag} | {res['params_m']:.3f} |" in report
        assert json.loads((out / "genotypes" / f"{tag}.json").read_text())["cells"]
    capsys.readouterr()
    assert experiment("goldnas-space", "--tiny", "--data", str(data), "--out", str(out)) == 0  # all finished
    assert capsys.readouterr().out.count("skip ") == 1 + len(tags)


def test_gpu_assignment_one_gpu_per_search(tmp_path: Path, monkeypatch) -> None:
    """Each supernet search sees one GPU (round robin by load), table searches none; no GPU is needed."""
    from goldnas_fast.experiment import runner
    from goldnas_fast.experiment.study import nb201_study

    launched = []

    class FakeProc:
        def __init__(self, cmd, env=None, **kw):
            launched.append((cmd, env))
            self.returncode = 0

        def poll(self):
            return 0

    monkeypatch.setattr(runner.subprocess, "Popen", FakeProc)
    monkeypatch.setattr("goldnas_fast.experiment.report.git_commit", lambda repo: "abc1234")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    specs = nb201_study("tiny", (0, 1), ("random", "goldnas", "darts"), None, tmp_path / "data")
    outcomes = runner.run_searches(specs, tmp_path, "cuda", 2, ["GPU-A", "GPU-B"], say=lambda s: None)
    assert [o.returncode for o in outcomes] == [0] * 6
    by_name = {cmd[cmd.index("--out") + 1].rsplit("/", 1)[1]: (cmd, env) for cmd, env in launched}
    for name in ("random-s0", "random-s1"):
        cmd, env = by_name[name]
        assert "--device" not in cmd and "CUDA_VISIBLE_DEVICES" not in env
    gpus = []
    for name in ("goldnas-s0", "goldnas-s1", "darts-s0", "darts-s1"):
        cmd, env = by_name[name]
        assert cmd[cmd.index("--device") + 1] == "cuda"
        gpus.append(env["CUDA_VISIBLE_DEVICES"])
        meta = json.loads((tmp_path / "meta" / f"{name}.json").read_text())
        assert meta["device_name"] == {"0": "GPU-A", "1": "GPU-B"}[env["CUDA_VISIBLE_DEVICES"]]
    assert sorted(gpus) == ["0", "0", "1", "1"]
    assert runner.default_jobs("cuda", 4) == 4 and runner.default_jobs("cuda", 1) == runner.PER_GPU_JOBS
    assert runner.default_jobs("cpu", 0) == 1


def test_train_half_is_the_nb201_train_split(shared_dir: Path, tmp_path: Path) -> None:
    """GOLD-NAS's data file holds exactly the NB201 ``train`` half (indices 0, 5, 7, 11, 13, ...)."""
    from goldnas_fast.experiment.data import write_train_half

    cifar = shared_dir / "data" / "cifar10"
    if not (cifar / "cifar10_train_4.npz").is_file():
        pytest.skip("the five CIFAR-10 training shards are not in shared/data/cifar10")
    half = write_train_half(cifar, tmp_path / "half.npz")
    with np.load(half) as z, np.load(cifar / "cifar10_train_0.npz") as shard0:
        assert z["images"].shape == (25000, 32, 32, 3)
        np.testing.assert_array_equal(z["images"][:5], shard0["images"][[0, 5, 7, 11, 13]])
        np.testing.assert_array_equal(z["labels"][:5], shard0["labels"][[0, 5, 7, 11, 13]])
