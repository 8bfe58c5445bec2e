"""`goldnas-fast train --arch LIST`: every architecture trained in a worker process (or one after another) ends
bit for bit as when it is trained alone (log, result, checkpoint weights); the summary compares them with the
NB201 table (mean |diff|, Spearman); lists, ranges and bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from goldnas_fast.cli import main
from goldnas_fast.errors import UserError
from goldnas_fast.nb201 import arch_to_index
from goldnas_fast.train.many import format_summary, spearman, summarize
from goldnas_fast.train.targets import parse_arch_list, resolve_targets

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny runs; see tests/conftest.py

CONV_POOL = "|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
ARCHS = [1835, arch_to_index(CONV_POOL), 3]
COMMON = ["--protocol", "nb201-12", "--batch-size", "16", "--epochs", "2", "--seed", "9", "--no-progress"]
STRIP = ("train_seconds", "images_per_s", "eval_seconds")


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory, tiny_data: str) -> Path:
    """Each architecture of ARCHS trained alone, in this process."""
    root = tmp_path_factory.mktemp("alone")
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for a in ARCHS:
            assert main(["train", "--arch", str(a), *COMMON, "--data", tiny_data, "--out", str(root / str(a))]) == 0
    finally:
        torch.set_num_threads(saved)
    return root


def _assert_same_run(a: Path, b: Path) -> None:
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=False) for d in (a, b))
    assert ca["model"].keys() == cb["model"].keys()
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    la = [{k: v for k, v in json.loads(x).items() if k not in STRIP} for x in (a / "log.jsonl").open()]
    lb = [{k: v for k, v in json.loads(x).items() if k not in STRIP} for x in (b / "log.jsonl").open()]
    assert la == lb and len(la) == 2
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (a, b))
    for key in ("final", "final_acc", "final_train", "benchmark", "arch", "arch_index", "protocol", "split", "seed"):
        assert ra[key] == rb[key], key
    assert json.loads((a / "config.json").read_text()) == json.loads((b / "config.json").read_text())


@pytest.mark.parametrize("workers", [2, 1])  # 2: the third architecture waits for a free worker
def test_archs_trained_together_equal_each_alone(tmp_path: Path, tiny_data: str, alone: Path, workers: int,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "many"
    arch_list = f"{ARCHS[0]},{CONV_POOL},{ARCHS[2]}"  # an index, an arch string, an index
    assert main(["train", "--arch", arch_list, *COMMON, "--data", tiny_data, "--workers", str(workers),
                 "--out", str(out)]) == 0
    for a in ARCHS:
        _assert_same_run(alone / str(a), out / f"arch-{a}")
        assert (out / "logs" / f"arch-{a}.txt").read_text().startswith("result: ")
    summary = json.loads((out / "summary.json").read_text())
    assert [r["arch_index"] for r in summary["archs"]] == ARCHS and summary["workers"] == workers
    assert summary["failed"] == {}
    results = [json.loads((alone / str(a) / "result.json").read_text()) for a in ARCHS]
    col = summary["vs_table"]["c10_valid_acc_12"]
    measured = [r["final_acc"]["x-valid"] for r in results]
    table = [r["benchmark"][0]["table_acc"] for r in results]
    assert col["archs"] == 3 and not col["comparable"]  # overridden protocol, 32 images
    assert col["mean_abs_diff"] == pytest.approx(sum(abs(m - t) for m, t in zip(measured, table)) / 3)
    rho = spearman(measured, table)
    assert col["spearman"] is None if math.isnan(rho) else col["spearman"] == pytest.approx(rho)
    printed = capsys.readouterr().out
    assert "c10_valid_acc_12 (x-valid, 3 archs, not comparable): mean |diff|" in printed


def test_resume_of_a_list_continues_every_run(tmp_path: Path, tiny_data: str, alone: Path) -> None:
    out = tmp_path / "many"
    argv = ["train", "--arch", f"{ARCHS[0]},{ARCHS[2]}", *COMMON, "--data", tiny_data, "--workers", "1"]
    assert main([*argv, "--out", str(out), "--stop-after", "1"]) == 0
    assert not (out / f"arch-{ARCHS[0]}" / "result.json").exists()
    assert json.loads((out / "summary.json").read_text())["archs"][0]["finished"] is False
    assert main([*argv, "--out", str(out)]) == 2  # not empty: needs --resume
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    for a in (ARCHS[0], ARCHS[2]):
        _assert_same_run(alone / str(a), out / f"arch-{a}")
        log = (out / "logs" / f"arch-{a}.txt").read_text()  # a resumed run appends to its console log
        assert "stopped after epoch 1/2" in log and "result: " in log, log


def test_resume_of_a_list_with_other_options_writes_nothing(tmp_path: Path, tiny_data: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "many"
    argv = ["train", "--arch", f"{ARCHS[0]},{ARCHS[2]}", *COMMON, "--data", tiny_data, "--workers", "1",
            "--out", str(out)]
    assert main([*argv, "--stop-after", "1"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*argv, "--resume", "--lr", "0.5"]) == 2  # refused in this process, before any worker starts
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds another train run" in err[0] and "protocol" in err[0], err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_arch_lists_and_ranges() -> None:
    assert parse_arch_list("3,1462,100-110") == ["3", "1462", *map(str, range(100, 111))]
    assert parse_arch_list(f" 7 ,{CONV_POOL}, 9-9") == ["7", CONV_POOL, "9"]
    assert [t.arch_index for t in resolve_targets(None, f"5,{CONV_POOL}", None, None)] == [5, ARCHS[1]]
    assert [t.arch_index for t in resolve_targets("nb201", "12-14", None, None)] == [12, 13, 14]
    assert len(resolve_targets("nb201", "12", None, None)) == 1
    for text, message in (("3,,4", "empty entry"), ("9-3", "backwards"), ("3,3", "listed twice"),
                          (f"{ARCHS[1]},{CONV_POOL}", "listed twice"), ("1,15625", "out of range"),
                          ("1,|bogus~0|", "not a NAS-Bench-201 architecture")):
        with pytest.raises(UserError, match=message):
            resolve_targets("nb201", text, None, None)


@pytest.mark.parametrize("argv,message", [
    (["--arch", "1,2", "--workers", "0"], "--workers must be a positive integer"),
    (["--arch", "1", "--workers", "-1"], "--workers must be a positive integer"),
    (["--arch", "1,2-1"], "backwards"),
    (["--arch", "1,2", "--protocol", "darts"], "trains goldnas"),
    # the data and the split are checked once, before any worker starts or OUT is made
    (["--arch", "1,2", "--split", "garbage"], "--split must be one of"),
    (["--arch", "1,2", "--data", __file__], "--data"),
    (["--arch", "1,2", "--max-train", "1"], "too few to split"),
])
def test_bad_list_input_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                            message: str) -> None:
    out = tmp_path / "out"
    args = ["train", *argv] + ([] if "--protocol" in argv else ["--protocol", "nb201-12"])
    assert main([*args, "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_spearman_and_summary_statistics() -> None:
    assert spearman([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)  # scipy.stats.spearmanr
    assert math.isnan(spearman([1], [2])) and math.isnan(spearman([1, 1], [2, 3]))

    def result(measured: float, table: float) -> dict:
        return {"arch": "a", "final_acc": {"x-valid": measured}, "seconds": {"total": 1.0}, "images_per_s": 1.0,
                "benchmark": [{"column": "c10_valid_acc_12", "eval_set": "x-valid", "table_acc": table,
                               "measured_acc": measured, "difference": measured - table, "comparable": True}]}

    s = summarize({1: result(80.0, 81.0), 2: result(70.0, 69.5), 3: result(60.0, 62.0), 4: None})
    col = s["vs_table"]["c10_valid_acc_12"]
    assert col["mean_abs_diff"] == pytest.approx(3.5 / 3) and col["spearman"] == pytest.approx(1.0)
    assert col["comparable"] and col["archs"] == 3 and s["archs"][3] == {"arch_index": 4, "finished": False}
    text = format_summary(s)
    assert "mean |diff| 1.17, Spearman 1.000" in text and "not finished" in text and "-1.00" in text


def test_a_failing_architecture_does_not_stop_the_others(tmp_path: Path, tiny_data: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import goldnas_fast.train.cli as train_cli

    real = train_cli._train

    def train(args, protocol, target, *rest):  # noqa: ANN001, ANN202
        if target.arch_index == 3:
            raise RuntimeError("training diverged at epoch 1: loss nan")
        return real(args, protocol, target, *rest)

    monkeypatch.setattr(train_cli, "_train", train)
    out = tmp_path / "many"
    assert main(["train", "--arch", "3,1835", *COMMON, "--data", tiny_data, "--workers", "1", "--out", str(out)]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == {"3": "RuntimeError: training diverged at epoch 1: loss nan"}
    assert [r["finished"] for r in summary["archs"]] == [False, True]
    assert "Traceback" in (out / "logs" / "arch-3.txt").read_text()
