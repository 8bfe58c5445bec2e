"""What ``goldnas-fast search`` prints: progress, epoch lines, labels, resume notes, help, errors."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from goldnas_fast.cli import build_parser, main
from goldnas_fast.runs import RunDir

TINY_NB201 = ["--C", "4", "--N", "1", "--max-train", "64", "--batch-size", "16"]

pytestmark = pytest.mark.usefixtures("single_thread")


def search(out: Path, *args: str) -> int:
    return main(["search", "--out", str(out), *args])


def epoch_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("epoch ")]


def test_without_a_terminal_one_line_per_epoch_and_no_bar(tmp_path: Path, capsys) -> None:
    """pytest's captured stderr is no terminal: no bar redraws, one stdout line per epoch."""
    assert search(tmp_path / "run", "--algo", "darts", *TINY_NB201, "--epochs", "2") == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "%|" not in captured.err, captured.err
    assert [ln.split(" |")[0] for ln in epoch_lines(captured.out)] == ["epoch 1", "epoch 2"]


def test_no_progress_prints_only_the_result(tmp_path: Path, capsys) -> None:
    assert search(tmp_path / "run", "--algo", "darts", *TINY_NB201, "--epochs", "2", "--no-progress") == 0
    captured = capsys.readouterr()
    assert epoch_lines(captured.out) == [] and "%|" not in captured.err
    assert "final architecture:" in captured.out.splitlines()[-1]


def test_progress_bar_only_on_a_terminal(monkeypatch) -> None:
    from goldnas_fast import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    assert progress.progress_bar(10, "x", "img").disable
    monkeypatch.setattr(progress.sys, "stderr", Terminal())
    bar = progress.progress_bar(10, "x", "img")
    assert not bar.disable
    bar.close()
    assert progress.progress_bar(10, "x", "img", enabled=False).disable


def test_the_two_flops_are_labelled(tmp_path: Path, capsys) -> None:
    """Epoch lines give the searched supernet's discrete FLOPs, the final line the benchmark network's."""
    assert search(tmp_path / "run", *TINY_NB201, "--epochs", "2", "--lambda0", "1.0") == 0
    out = capsys.readouterr().out
    lines = epoch_lines(out)
    assert lines and all("supernet FLOPs" in ln for ln in lines)
    assert any("NAS-Bench-201 network FLOPs" in ln for ln in out.splitlines() if ln.startswith("table index"))


def test_darts_pareto_lists_each_architecture_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert search(out, "--algo", "darts", *TINY_NB201, "--epochs", "3") == 0
    result = json.loads((out / "result.json").read_text())
    archs = [p["arch"] for p in result["pareto"]]
    assert len(archs) == len(set(archs)) and result["final_arch"] in archs
    assert [p for p in result["pareto"] if p["arch"] == result["final_arch"]][0]["final"] is True


def test_final_architecture_recorded_earlier_is_one_candidate(tmp_path: Path) -> None:
    from goldnas_fast.search.results import finish_nb201_result

    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    run_dir = RunDir(tmp_path / "run", "search", {"algo": "darts"})
    result = finish_nb201_result(run_dir, {"algo": "darts"}, arch, [{"epoch": 1, "arch": arch}], 1.0)
    assert result["pareto"] == [{**result["recorded"][0], "final": True}]


def test_resume_says_where_it_continues_or_that_it_had_finished(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    args = ["--algo", "darts", *TINY_NB201, "--epochs", "2"]
    original = RunDir.save_checkpoint

    def interrupt(run_dir, state):
        original(run_dir, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", interrupt)
    assert search(out, *args) == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    capsys.readouterr()
    assert search(out, *args, "--resume") == 0
    assert f"resuming {out} after epoch 1/2" in capsys.readouterr().err
    assert search(out, *args, "--resume") == 0
    assert "had already finished after epoch 2/2 (stop: epoch_limit)" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--seed", "--C", "--c0", "--n0", "--xi-min", "--mu", "--lr-alpha", "--N",
                                  "--xi-max", "--backend", "--no-progress"])
def test_every_option_has_help(flag: str) -> None:
    parser = build_parser()
    search_parser = parser._subparsers._group_actions[0].choices["search"]  # noqa: SLF001
    (action,) = [a for a in search_parser._actions if flag in a.option_strings]  # noqa: SLF001
    assert action.help and len(action.help) > 10


@pytest.mark.parametrize("command", ["train", "search"])
def test_a_bad_data_path_is_named_once(tmp_path: Path, capsys, command: str) -> None:
    bad = tmp_path / "passwd"
    bad.write_text("root:x:0:0:root:/root:/bin/bash\n")
    argv = ["--space", "nb201", "--arch", "0", "--protocol", "nb201-12"] if command == "train" else []
    assert main([command, *argv, "--data", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.count(str(bad)) == 1 and "--data" in err, err


def test_search_and_train_share_the_default_run_directory_rule(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--algo", "random", "--evaluations", "3"]) == 0
    assert main(["train", "--space", "nb201", "--arch", "0", "--protocol", "nb201-12", "--epochs", "1",
                 "--batch-size", "16", "--max-train", "32", "--no-progress"]) == 0
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(names) == 2 and names[0].startswith("search-nb201-random-s0-") and \
        names[1].startswith("train-nb201-nb201-12-s0-"), names
    assert main(["train", "--space", "nb201", "--arch", "0", "--protocol", "nb201-12", "--resume"]) == 2


def test_train_without_a_terminal_prints_one_line_per_epoch(tmp_path: Path, capsys) -> None:
    assert main(["train", "--space", "nb201", "--arch", "0", "--protocol", "nb201-12", "--epochs", "2",
                 "--batch-size", "16", "--max-train", "32", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "%|" not in err, err
    assert [ln.split(":")[0] for ln in err.splitlines() if ln.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
