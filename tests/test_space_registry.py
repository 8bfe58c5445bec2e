"""A new search space is its adapter plus one line in ``spaces.SPACES``: ``goldnas-fast search`` takes the
space's defaults, keyword arguments, ``config.json`` entries, gate and stop rules and result writer from
the adapter, with no edit under ``search/``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from goldnas_fast import spaces
from goldnas_fast.cli import main
from goldnas_fast.spaces.nb201.adapter import NB201Space

pytestmark = pytest.mark.usefixtures("single_thread")


class ToySpace(NB201Space):
    """NAS-Bench-201's supernet under another name, with its own defaults and an extra record entry."""

    name = "toy"
    supernet_defaults: ClassVar[dict[str, Any]] = {"C": 4, "N": 1, "batch_size": 16}
    built: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        ToySpace.built.append(kwargs)
        super().__init__(**kwargs)

    @classmethod
    def search_defaults(cls, sample: bool) -> dict[str, Any]:
        return dict(cls.supernet_defaults)  # no smaller N on the embedded sample: it is 1 already

    @classmethod
    def record(cls, config: Any) -> dict[str, Any]:
        return {**super().record(config), "toy": True}


@pytest.fixture
def toy(monkeypatch) -> None:
    monkeypatch.setitem(spaces.SPACES, "toy", f"{__name__}:ToySpace")
    ToySpace.built.clear()


def test_registered_space_is_searched_through_the_cli(tmp_path: Path, toy) -> None:
    out = tmp_path / "run"
    assert main(["search", "--space", "toy", "--algo", "goldnas", "--epochs", "1", "--max-train", "32",
                 "--out", str(out), "--no-progress"]) == 0
    assert ToySpace.built == [{"C": 4, "backend": "fused", "lean": False, "N": 1, "gate": "sigmoid"}]
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["space"] == "toy" and config["C"] == 4 and config["batch_size"] == 16
    assert config["N"] == 1 and config["toy"] is True and "layers" not in config
    assert config["flops_min"] is None  # the controller's default: the toy space sets none
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    assert [r["epoch"] for r in log] == [1]
    result = json.loads((out / "result.json").read_text())
    assert result["space"] == "toy" and result["final_arch"] == log[-1]["arch"] and result["epochs_run"] == 1


def test_nb201_only_algorithms_refuse_a_registered_space(tmp_path: Path, toy, capsys) -> None:
    for algo in ("darts", "random", "evolution"):
        rc = main(["search", "--space", "toy", "--algo", algo, "--out", str(tmp_path / algo)])
        err = capsys.readouterr().err
        assert rc == 2 and f"--algo {algo}" in err and "use --space nb201" in err, err
        assert not (tmp_path / algo).exists()


def test_unregistered_space_is_unknown(tmp_path: Path, capsys) -> None:
    assert main(["search", "--space", "toy", "--out", str(tmp_path / "run")]) == 2
    assert "unknown --space 'toy'" in capsys.readouterr().err
