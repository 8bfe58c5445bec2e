"""Every file of a run gets the mode the user's umask gives an ordinary new file, also after a resume."""
from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from goldnas_fast.cli import main
from goldnas_fast.runs import RunDir, atomic_write_bytes

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes"),
    pytest.mark.usefixtures("single_thread"),
]

UMASKS = [0o022, 0o077, 0o002]
TINY_SEARCH = ["search", "--algo", "darts", "--C", "4", "--N", "1", "--max-train", "64", "--batch-size", "16",
               "--epochs", "1"]
TINY_TRAIN = ["train", "--space", "nb201", "--arch", "1835", "--protocol", "nb201-12", "--batch-size", "32",
              "--max-train", "64", "--epochs", "2", "--no-progress"]


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Sets the process umask for one test and restores it (pytest runs tests in one thread)."""
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ordinary_mode(tmp_path: Path) -> int:
    """The mode ``open(..., 'w')`` gives a new file here (umask and any default ACL of the folder)."""
    probe = tmp_path / "probe.txt"
    probe.write_text("x")
    m = mode(probe)
    probe.unlink()
    return m


def test_atomic_write_gives_the_umask_mode(tmp_path: Path, umask: int) -> None:
    expected = ordinary_mode(tmp_path)
    target = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(target, b"one")
    assert mode(target) == expected and target.read_bytes() == b"one"
    target.chmod(0o600)  # a replacement is a new file: it gets the umask mode again
    atomic_write_bytes(target, b"two")
    assert mode(target) == expected and target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.bin"]  # no temporary file left


def test_run_dir_files_and_log_appends(tmp_path: Path, umask: int) -> None:
    expected = ordinary_mode(tmp_path)
    run = RunDir(tmp_path / "run", "search", {"seed": 0})
    run.log({"epoch": 1})
    run.log({"epoch": 2})
    run.save_checkpoint({"epochs_done": 1, "w": torch.zeros(2)})
    run.write_result({"ok": True})
    for name in ("config.json", "log.jsonl", "checkpoint.pt", "result.json"):
        assert mode(run.path / name) == expected, name
    run.truncate_log(1)  # what a resume does: rewrites the log atomically
    assert mode(run.log_path) == expected and run.log_path.read_text().count("\n") == 1
    run.log_path.chmod(0o640)  # an append must leave a user's chosen mode alone
    run.log({"epoch": 2})
    assert mode(run.log_path) == 0o640


def _run_files(out: Path) -> dict[str, int]:
    return {p.name: mode(p) for p in out.iterdir() if p.is_file()}


def test_search_and_train_files_after_resume(tmp_path: Path, umask: int) -> None:
    """End to end through the command line: a search and its resume, and a train run stopped after one
    epoch and resumed; every file of both run directories (plots included) has the umask mode."""
    expected = ordinary_mode(tmp_path)
    search_out, train_out = tmp_path / "search", tmp_path / "train"
    assert main([*TINY_SEARCH, "--out", str(search_out)]) == 0
    assert main([*TINY_SEARCH, "--out", str(search_out), "--resume"]) == 0
    files = _run_files(search_out)
    assert {"config.json", "log.jsonl", "checkpoint.pt", "result.json", "pareto.png"} <= files.keys()
    assert files == dict.fromkeys(files, expected)
    assert main([*TINY_TRAIN, "--out", str(train_out), "--stop-after", "1"]) == 0
    assert main([*TINY_TRAIN, "--out", str(train_out), "--resume"]) == 0
    files = _run_files(train_out)
    assert {"config.json", "log.jsonl", "checkpoint.pt", "result.json", "curves.png"} <= files.keys()
    assert files == dict.fromkeys(files, expected)
