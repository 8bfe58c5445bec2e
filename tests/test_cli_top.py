"""The top-level command line: help text, ``--version``, the interrupt message, the ``nb201`` legend."""
from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

import goldnas_fast
import goldnas_fast.train.cli as train_cli
from goldnas_fast import cli
from goldnas_fast.cli import main
from goldnas_fast.nb201.cli import LEGEND
from goldnas_fast.runs import RunDir

REPO = Path(__file__).resolve().parents[1]


def test_top_level_help_is_plain_text(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out and "::" not in out  # no reStructuredText markup
    for name in cli.SUBCOMMANDS:
        assert name in out
    assert "--version" in out


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out.strip()
    # tomllib is 3.11+, the package supports 3.10: the [project] table's version line, by pattern
    declared = re.search(r'^\[project\][^\[]*?^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M | re.S)
    assert declared is not None
    assert printed == f"goldnas-fast {declared.group(1)}"
    assert goldnas_fast.__version__ == declared.group(1)  # the fallback must not drift from the metadata


def test_version_falls_back_to_the_package_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    monkeypatch.setattr(goldnas_fast, "__version__", "9.9.9-test")
    assert cli.version() == "9.9.9-test"


# ------------------------------------------------------------------------------------------ interrupts
def _interrupting(monkeypatch: pytest.MonkeyPatch, body) -> None:
    """Replaces ``train``'s run with ``body(args)``, which does some work and is then interrupted."""
    def run(args):
        body(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "run", run)


TRAIN_ARGV = ["train", "--space", "nb201", "--arch", "1835", "--protocol", "nb201-12"]


def _interrupted_line(capsys: pytest.CaptureFixture, out: Path, monkeypatch: pytest.MonkeyPatch, body,
                      drawn: str = "") -> str:
    """The interrupt message, checked to stand on a line of its own after what ``body`` drew (``drawn``)."""
    _interrupting(monkeypatch, body)
    assert main([*TRAIN_ARGV, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert drawn in err
    lines = err.rstrip("\n").split("\n")  # not splitlines(): a bar's carriage returns do not end a line
    assert lines[-1].startswith("goldnas-fast train: interrupted; "), lines
    return lines[-1]


def test_interrupt_before_the_run_directory_exists(tmp_path, capsys, monkeypatch) -> None:
    line = _interrupted_line(capsys, tmp_path / "run", monkeypatch, lambda args: None)
    assert "nothing was written" in line and "checkpoint" not in line


def test_interrupt_before_the_first_checkpoint(tmp_path, capsys, monkeypatch) -> None:
    def body(args):
        run = RunDir(args.out, "train", {"x": 1})
        run.log({"epoch": 1})  # logged, interrupted before its checkpoint

    line = _interrupted_line(capsys, tmp_path / "run", monkeypatch, body)
    assert "no checkpoint was written" in line and "kept" not in line
    assert "holds config.json, log.jsonl" in line and str(tmp_path / "run") in line


@pytest.mark.parametrize("key", ["epochs_done", "epoch"])  # train's and search's checkpoints
def test_interrupt_after_a_checkpoint_names_its_epoch(tmp_path, capsys, monkeypatch, key) -> None:
    def body(args):
        RunDir(args.out, "train", {"x": 1}).save_checkpoint({key: 2, "w": torch.zeros(3)})

    line = _interrupted_line(capsys, tmp_path / "run", monkeypatch, body)
    assert f"{tmp_path / 'run'} keeps the checkpoint of epoch 2; continue with --resume" in line


def test_interrupt_message_gets_its_own_line_after_a_progress_bar(tmp_path, capsys, monkeypatch) -> None:
    from tqdm import tqdm

    bars = []  # keeps the bar alive, as the interrupted frame does: deleting it would close it

    def body(args):
        bars.append(tqdm(total=10, desc="epoch 1/3", file=sys.stderr))
        bars[0].update(4)  # interrupted mid-epoch: the bar is still open, its line unfinished

    line = _interrupted_line(capsys, tmp_path / "run", monkeypatch, body, drawn="epoch 1/3")
    assert "\r" not in line and "epoch 1/3" not in line


# ------------------------------------------------------------------------------------------ nb201
def _explained(column: str) -> bool:
    """Whether the legend explains every part of a column name: dataset, split, schedule, source."""
    if column in ("index", "arch") or re.search(rf"(^|\s){re.escape(column)}\b", LEGEND):
        return True
    m = re.fullmatch(r"(c10|c100|in16)_(valid|test|trainsplit_test)_acc_(200|12)(_nats)?", column)
    if not m:
        return False
    dataset, split, schedule, nats = m.groups()
    return (dataset in LEGEND and f"_{schedule}" in LEGEND and (nats is None or "_nats" in LEGEND)
            and (f"{dataset}_{split}" in LEGEND or (dataset != "c10" and "valid, test" in LEGEND)))


def test_nb201_table_has_a_legend_for_every_column(capsys: pytest.CaptureFixture) -> None:
    assert main(["nb201", "9930"]) == 0
    out = capsys.readouterr().out
    table, legend = out.split("\n\n", 1)
    columns = [line.split()[0] for line in table.splitlines()]
    assert len(columns) == 20
    assert legend.rstrip("\n") == LEGEND
    unexplained = [c for c in columns if not _explained(c)]
    assert not unexplained
    assert "docs/method/nasbench201.md" in LEGEND and (REPO / "docs" / "method" / "nasbench201.md").is_file()


def test_nb201_json_has_no_legend_and_help_has_it(capsys: pytest.CaptureFixture) -> None:
    assert main(["nb201", "9930", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 9930
    with pytest.raises(SystemExit):
        main(["nb201", "--help"])
    help_text = capsys.readouterr().out
    assert "_nats" in help_text and "\n  c10, c100, in16      CIFAR-10" in help_text  # layout kept
