"""The search layer's shape: typed configs whose fields name their options, a registry, one generic loop."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from goldnas_fast.cli import build_parser, main
from goldnas_fast.errors import UserError
from goldnas_fast.runs import RunDir
from goldnas_fast.search import registry
from goldnas_fast.search.algorithm import SearchAlgorithm
from goldnas_fast.search.config import SearchConfig, option


def search_parser():
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices["search"]  # noqa: SLF001


@pytest.mark.parametrize("name", sorted(registry.ALGORITHMS))
def test_every_config_field_names_an_option_of_the_command_line(name: str) -> None:
    config_type = registry.get_algorithm(name).config_type
    known = {s for a in search_parser()._actions for s in a.option_strings}  # noqa: SLF001
    for f in dataclasses.fields(config_type):
        assert f.metadata.get("flag") in known, f"{config_type.__name__}.{f.name}"


def test_options_default_to_unset() -> None:
    args = search_parser().parse_args([])
    set_ = {k: v for k, v in vars(args).items() if v is not None and not k.startswith("_")}
    assert set_ == {"resume": False, "distributed": False, "no_progress": False}


@pytest.mark.parametrize(("argv", "option"), [
    (["--xi-min", "0.5", "--xi-max", "0.1"], "--xi-max"), (["--n0", "0"], "--n0"), (["--mu", "-1"], "--mu"),
    (["--lr-weights", "0"], "--lr-weights"), (["--algo", "darts", "--lr-weights", "-1"], "--lr-weights"),
    (["--batch-size", "0"], "--batch-size"), (["--algo", "random", "--evaluations", "0"], "--evaluations"),
    (["--max-train", "0"], "--max-train"), (["--C", "0"], "--C"),
])
def test_a_config_error_names_its_option(argv: list[str], option: str) -> None:
    args = search_parser().parse_args(argv)
    config_type = registry.get_algorithm(args.algo or registry.DEFAULT_ALGORITHM).config_type
    with pytest.raises(UserError, match=f"^{option} must be"):
        config_type.from_options(vars(args))


def test_defaults_resolve_per_space_and_data() -> None:
    gold = registry.get_algorithm("goldnas").config_type
    sample = gold.from_options({}).record()
    assert (sample["epochs"], sample["N"], sample["lambda0"], sample["flops_min"]) == (30, 2, 1e-3, None)
    full = gold.from_options({"data": "x"}).record()
    assert (full["epochs"], full["N"], full["lambda0"], full["batch_size"], full["C"]) == (100, 5, 1e-5, 64, 16)
    space = gold.from_options({"space": "goldnas", "data": "x"}).record()
    assert (space["C"], space["batch_size"], space["flops_min"], space["layers"]) == (36, 96, 240.0, 14)
    assert "N" not in space and space["ops"] == ["skip_connect", "sep_conv_3x3"]
    darts = registry.get_algorithm("darts").config_type.from_options({}).record()
    assert (darts["epochs"], darts["lr_weights"]) == (50, 0.025)


# ------------------------------------------------------------------------------------- a new algorithm
@dataclasses.dataclass(frozen=True)
class CountConfig(SearchConfig):
    algo = "count"
    spaces = ("nb201",)
    evaluations: int = option(5, "--evaluations")


class CountSearch(SearchAlgorithm):
    """The smallest algorithm: epoch k records k; the result is the sum."""

    config_type = CountConfig

    def __init__(self, epochs: int) -> None:
        self.epochs, self.total = epochs, 0

    @classmethod
    def build(cls, config: CountConfig, ctx: Any) -> CountSearch:
        return cls(config.evaluations)

    def run_epoch(self, epoch: int, progress=None) -> dict[str, Any]:
        self.total += epoch
        return {"epoch": epoch + 1, "total": self.total, "stop": False, "stop_reason": None}

    def epoch_line(self, record: dict[str, Any]) -> str | None:
        return f"count {record['total']}"

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = int(state["total"])

    def result(self, run_dir: RunDir, history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        result = {"total": self.total, "epochs_run": len(history)}
        run_dir.write_result(result)
        return result


def test_a_registered_algorithm_runs_checkpoints_and_resumes(tmp_path: Path, monkeypatch, capsys) -> None:
    """One class and one registry line: the generic loop logs, checkpoints and resumes it."""
    monkeypatch.setitem(registry.ALGORITHMS, "count", f"{__name__}:CountSearch")
    out = tmp_path / "run"
    calls = {"n": 0}
    original = RunDir.save_checkpoint

    def interrupt_after_two(run_dir, state):
        original(run_dir, state)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", interrupt_after_two)
    assert main(["search", "--algo", "count", "--out", str(out)]) == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    assert main(["search", "--algo", "count", "--out", str(out), "--resume"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["total"] for r in log] == [0, 1, 3, 6, 10]
    assert log[-1]["stop_reason"] == "epoch_limit"
    assert json.loads((out / "result.json").read_text()) == {"total": 10, "epochs_run": 5}
    assert json.loads((out / "config.json").read_text())["config"]["algo"] == "count"
    assert "count 10" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ table searches
@pytest.mark.parametrize("algo", ["random", "evolution"])
def test_table_searches_log_and_resume_like_the_others(tmp_path: Path, monkeypatch, algo: str) -> None:
    """One log line per evaluation; interrupted and resumed, the search equals an uninterrupted one."""
    args = ["--algo", algo, "--evaluations", "250", "--seed", "4"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["search", "--out", str(full), *args]) == 0
    calls = {"n": 0}
    original = RunDir.save_checkpoint

    def interrupt(run_dir, state):
        original(run_dir, state)
        calls["n"] += 1
        if calls["n"] == 2:  # after evaluation 200 (checkpoints every 100), logged up to there
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", interrupt)
    assert main(["search", "--out", str(cut), *args]) == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    assert main(["search", "--out", str(cut), *args, "--resume"]) == 0

    def log(out: Path) -> list[dict[str, Any]]:
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (out / "log.jsonl").read_text().splitlines()]

    assert [r["evaluation"] for r in log(full)] == list(range(1, 251))
    assert log(cut) == log(full)
    a, b = (json.loads((out / "result.json").read_text()) for out in (full, cut))
    assert a["recorded"] == b["recorded"] and a["final_arch"] == b["final_arch"] and a["evaluated"] == 250
