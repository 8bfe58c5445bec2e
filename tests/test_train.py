"""goldnas_fast.train: documented protocols, the NB201 split, a tiny CPU run, bit-exact resume, bad input."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from goldnas_fast.cli import main
from goldnas_fast.errors import UserError
from goldnas_fast.runs import RunDir
from goldnas_fast.train import PROTOCOLS, get_protocol
from goldnas_fast.train.trainer import TrainOptions, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny runs; see tests/conftest.py

ALL_SKIP = 1835  # |skip_connect~0|+...: no conv in any cell, the cheapest trainable NB201 network to run
SMOKE = ["--space", "nb201", "--arch", str(ALL_SKIP), "--protocol", "nb201-12", "--batch-size", "32",
         "--max-train", "192", "--no-progress"]
TINY = ["--space", "nb201", "--arch", str(ALL_SKIP), "--protocol", "nb201-12", "--batch-size", "16", "--no-progress"]


def _tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- protocols
@pytest.mark.parametrize("name,epochs", [("nb201-12", 12), ("nb201-200", 200)])
def test_nb201_protocols_are_the_documented_ones(name: str, epochs: int) -> None:
    p = get_protocol(name)
    assert (p.epochs, p.batch_size, p.lr, p.lr_min) == (epochs, 256, 0.1, 0.0)
    assert (p.crop_padding, p.flip, p.cutout, p.aux_weight, p.drop_path, p.grad_clip) == (4, True, 0, 0.0, 0.0, None)
    assert p.mean == pytest.approx([125.3 / 255, 123.0 / 255, 113.9 / 255], abs=0)
    assert p.std == pytest.approx([63.0 / 255, 62.1 / 255, 66.7 / 255], abs=0)
    assert p.default_split == "cifar10-valid" and p.init_channels == 16
    opt = p.make_optimizer([nn.Parameter(torch.zeros(2))])
    assert type(opt) is torch.optim.SGD
    g = opt.param_groups[0]
    assert (g["momentum"], g["nesterov"], g["weight_decay"], g["lr"]) == (0.9, True, 5e-4, 0.1)
    # cosine stepped once per epoch, evaluated at the integer epoch, no warm-up
    lrs = [p.lr_at(e) for e in range(epochs)]
    assert lrs[0] == 0.1
    assert lrs[-1] == pytest.approx(0.1 * (1 + math.cos(math.pi * (epochs - 1) / epochs)) / 2, rel=1e-15)
    assert lrs[-1] > 0 and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[epochs // 2] == pytest.approx(0.05)
    with pytest.raises(ValueError):
        p.lr_at(epochs)


def test_nb201_schedule_matches_torch_cosine_annealing_per_epoch() -> None:
    p = get_protocol("nb201-12")
    opt = p.make_optimizer([nn.Parameter(torch.zeros(1))])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12, eta_min=0.0)
    for e in range(12):
        assert opt.param_groups[0]["lr"] == pytest.approx(p.lr_at(e), rel=1e-12)
        opt.step()
        sched.step()


def test_darts_protocol_is_the_documented_one() -> None:
    p = get_protocol("darts")
    assert (p.epochs, p.batch_size, p.lr, p.weight_decay, p.momentum, p.nesterov) == (600, 96, 0.025, 3e-4, 0.9,
                                                                                      False)
    assert (p.cutout, p.aux_weight, p.drop_path, p.grad_clip, p.init_channels) == (16, 0.4, 0.2, 5.0, 36)
    assert (p.crop_padding, p.flip, p.space) == (4, True, "goldnas")
    assert p.mean == (0.49139968, 0.48215827, 0.44653124) and p.std == (0.24703233, 0.24348505, 0.26158768)
    assert p.drop_path_at(0) == 0.0 and p.drop_path_at(300) == pytest.approx(0.1)
    assert p.lr_at(599) == pytest.approx(0.025 * (1 + math.cos(math.pi * 599 / 600)) / 2)


def test_overrides_are_recorded_and_validated() -> None:
    p = get_protocol("nb201-200").with_overrides(epochs=3, lr=0.05)
    assert (p.epochs, p.lr, p.batch_size, p.overridden) == (3, 0.05, 256, ("epochs", "lr"))
    assert p.to_dict()["overridden"] == ["epochs", "lr"] and p.to_dict()["optimizer"] == "SGD"
    assert get_protocol("nb201-12").with_overrides(epochs=12) is PROTOCOLS["nb201-12"]  # same value: no override
    for bad in ({"epochs": 0}, {"batch_size": -1}, {"lr": float("nan")}, {"epochs": 2.5}):
        with pytest.raises(UserError):
            get_protocol("nb201-12").with_overrides(**bad)
    with pytest.raises(UserError, match="unknown protocol"):
        get_protocol("nb201-13")


# ------------------------------------------------------------------------------------------- split
def test_nb201_split_first_indices_and_inputs() -> None:
    from goldnas_fast.data import CifarArrays, nb201_cifar10_split
    from goldnas_fast.train.inputs import make_inputs

    train, valid = nb201_cifar10_split()
    assert train[:5].tolist() == [0, 5, 7, 11, 13] and valid[:5].tolist() == [1, 2, 3, 4, 6]
    assert len(train) == len(valid) == 25000 and not set(train.tolist()) & set(valid.tolist())
    # the first 2,000 official images: subsets of the official halves, recorded as such
    n = 2000
    arrays = CifarArrays(np.zeros((n, 32, 32, 3), np.uint8), np.arange(n) % 10, np.zeros((7, 32, 32, 3), np.uint8),
                         np.zeros(7, np.int64), source="synthetic")
    inp = make_inputs(arrays, "cifar10-valid", get_protocol("nb201-12"), torch.device("cpu"), seed=0,
                      embedded_sample=False)
    assert inp.info["first_train_indices"] == [0, 5, 7, 11, 13]
    assert inp.info["first_valid_indices"] == [1, 2, 3, 4, 6]
    assert inp.train.num_images + inp.eval_sets["x-valid"].num_images == n
    assert inp.eval_sets["ori-test"].num_images == 7
    assert any("only 7 of the 10000" in note for note in inp.info["notes"])
    full = make_inputs(arrays, "cifar10", get_protocol("nb201-12"), torch.device("cpu"), seed=0,
                       embedded_sample=False)
    assert full.train.num_images == n and list(full.eval_sets) == ["ori-test"]
    assert full.train.batch_size == 256 and full.train.augment and full.train.cutout == 0


# ------------------------------------------------------------------------------------------- table
def test_table_columns_for_each_protocol_and_split() -> None:
    from goldnas_fast.nb201.benchmark import Benchmark
    from goldnas_fast.train.reference import compare_with_table

    bench = Benchmark()
    full = {"x-valid": {"acc": 90.0, "images": 25000}, "ori-test": {"acc": 93.0, "images": 1000}}
    cases = {("nb201-12", "cifar10-valid"): ["c10_valid_acc_12"], ("nb201-12", "cifar10"): ["c10_test_acc_12"],
             ("nb201-200", "cifar10-valid"): ["c10_valid_acc_200", "c10_trainsplit_test_acc_200"],
             ("nb201-200", "cifar10"): ["c10_test_acc_200"]}
    for (proto, split), columns in cases.items():
        final = full if split == "cifar10-valid" else {"ori-test": full["ori-test"]}
        n_train = 25000 if split == "cifar10-valid" else 50000
        rows = compare_with_table(6111, get_protocol(proto), {"name": split, "train_images": n_train}, final, bench)
        assert [r["column"] for r in rows] == columns
        for r in rows:
            assert r["comparable"] and r["difference"] == pytest.approx(r["measured_acc"] - r["table_acc"])
    rows = compare_with_table(6111, get_protocol("nb201-200"), {"name": "cifar10", "train_images": 50000},
                              {"ori-test": full["ori-test"]}, bench)
    assert rows[0]["table_acc"] == pytest.approx(94.373333, abs=1e-5)  # docs §3.2: arch 6111
    assert any("1000 images" in c for c in rows[0]["caveats"])


# ------------------------------------------------------------------------------------------- runs
def test_tiny_cpu_run_lowers_loss_and_writes_every_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert main(["train", *SMOKE, "--epochs", "2", "--lr", "0.05", "--seed", "1", "--out", str(out)]) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line.startswith("result: x-valid") and "c10_valid_acc_12" in last_line and "diff" in last_line
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    p = get_protocol("nb201-12").with_overrides(epochs=2, batch_size=32, lr=0.05)
    assert [r["lr"] for r in log] == [p.lr_at(0), p.lr_at(1)]
    assert log[1]["train_loss"] < log[0]["train_loss"] < math.log(10) + 0.2
    assert set(log[0]["eval"]) == {"x-valid", "ori-test"}
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["epochs_done"] == 2 and "rng" in ckpt and "optimizer" in ckpt
    result = json.loads((out / "result.json").read_text())
    for key in ("final", "final_acc", "params_m", "flops_m", "seconds", "protocol", "benchmark", "split", "arch"):
        assert key in result
    assert result["arch_index"] == ALL_SKIP and result["protocol"]["overridden"] == ["batch_size", "epochs", "lr"]
    from goldnas_fast.nb201 import cost

    assert result["params_m"] == pytest.approx(cost(ALL_SKIP).params_m, abs=1e-9)
    assert result["flops_m"] == pytest.approx(cost(ALL_SKIP).flops_m, abs=1e-9)
    b = result["benchmark"][0]
    assert b["column"] == "c10_valid_acc_12" and not b["comparable"]
    assert b["difference"] == pytest.approx(result["final_acc"]["x-valid"] - b["table_acc"])
    assert "embedded sample" in result["split"]["how"] or "embedded" in " ".join(result["split"]["notes"])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_interruption_is_bit_exact(tmp_path: Path, tiny_data: str, capsys: pytest.CaptureFixture) -> None:
    args = [*TINY, "--data", tiny_data, "--epochs", "3", "--seed", "5"]
    assert main(["train", *args, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *args, "--out", str(tmp_path / "b"), "--stop-after", "1"]) == 0
    assert not (tmp_path / "b" / "result.json").exists()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["epochs_done"] == 1
    capsys.readouterr()
    assert main(["train", *args, "--out", str(tmp_path / "b"), "--resume"]) == 0
    assert f"resuming {tmp_path / 'b'} after epoch 1/3" in capsys.readouterr().err  # said under --no-progress too
    assert main(["train", *args, "--out", str(tmp_path / "b"), "--resume"]) == 0
    assert f"{tmp_path / 'b'}: the run had already finished after epoch 3/3" in capsys.readouterr().err
    assert main(["train", *args, "--out", str(tmp_path / "c"), "--resume"]) == 0
    assert "from the start (it holds no checkpoint yet)" in capsys.readouterr().err
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    strip = ("train_seconds", "images_per_s", "eval_seconds")
    la = [{k: v for k, v in json.loads(x).items() if k not in strip} for x in (tmp_path / "a/log.jsonl").open()]
    lb = [{k: v for k, v in json.loads(x).items() if k not in strip} for x in (tmp_path / "b/log.jsonl").open()]
    assert la == lb and len(la) == 3
    ra, rb = (json.loads((tmp_path / d / "result.json").read_text()) for d in "ab")
    assert ra["final"] == rb["final"]


class _AuxNet(nn.Module):
    """Records drop_path_prob per forward; returns (logits, aux) like a GOLD-NAS network."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
        self.aux = nn.Linear(12, 10)
        self.drop_path_prob = -1.0
        self.seen: list[float] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(self.drop_path_prob)
        return self.body(x), self.aux(x.flatten(1)) * 100  # a large aux loss: clipping must act


def test_darts_features_drop_path_ramp_aux_loss_and_clipping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 10, (8,))
    p = get_protocol("darts").with_overrides(epochs=4, batch_size=8)
    model = _AuxNet()
    norms: list[float] = []
    clip = nn.utils.clip_grad_norm_

    def spy(params: object, max_norm: float) -> torch.Tensor:
        assert max_norm == 5.0
        norm = clip(params, max_norm)
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(nn.utils, "clip_grad_norm_", spy)
    trainer = Trainer(model, p, RunDir(tmp_path / "r", "train", {"t": 1}), lambda g: iter([(x, y)]), 8,
                      {}, TrainOptions(seed=0, device=torch.device("cpu"), progress=False))
    trainer.fit()
    assert model.seen == [p.drop_path_at(e) for e in range(4)]
    assert model.seen == pytest.approx([0.0, 0.05, 0.1, 0.15])
    assert len(norms) == 4 and max(norms) > 5.0  # pre-clip norms: the aux term dominates, clipping acts
    logits, target = (torch.zeros(2, 10), torch.zeros(2, 10)), torch.tensor([0, 1])
    model.train()
    assert float(trainer._loss(logits, target)[0]) == pytest.approx(1.4 * math.log(10))  # CE + 0.4 CE_aux
    model.eval()
    assert float(trainer._loss(logits, target)[0]) == pytest.approx(math.log(10))


TINY_GENOTYPE = {"cells": [[["sep_conv_3x3", 0, 2]], [["skip_connect", 1, 2]], [["max_pool_3x3", 0, 2]]]}


def test_goldnas_genotype_from_a_search_trains_with_the_darts_protocol(tmp_path: Path, tiny_data: str) -> None:
    from goldnas_fast.spaces.goldnas import network_cost

    search = tmp_path / "search"
    search.mkdir()
    (search / "result.json").write_text(json.dumps({"final_genotype": TINY_GENOTYPE}))
    out = tmp_path / "run"
    assert main(["train", "--from-search", str(search), "--protocol", "darts", "--epochs", "2", "--batch-size", "16",
                 "--max-train", "32", "--data", tiny_data, "--no-progress", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["space"] == "goldnas" and result["split"]["name"] == "cifar10"
    assert list(result["final_acc"]) == ["ori-test"] and "benchmark" not in result
    cost = network_cost(TINY_GENOTYPE)
    assert result["params_m"] == pytest.approx(cost.params_m) and result["flops_m"] == pytest.approx(cost.flops_m)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["drop_path"] for r in log] == [0.0, 0.1]
    assert result["protocol"]["cutout"] == 16 and result["protocol"]["aux_weight"] == 0.4


def test_from_search_result_gives_the_architecture(tmp_path: Path) -> None:
    from goldnas_fast.nb201 import index_to_arch
    from goldnas_fast.train.targets import resolve_target

    (tmp_path / "result.json").write_text(json.dumps({"final_arch": index_to_arch(6111)}))
    t = resolve_target(None, None, None, str(tmp_path))
    assert (t.space, t.arch_index, t.record["arch"]) == ("nb201", 6111, index_to_arch(6111))
    (tmp_path / "result.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(UserError, match="neither final_arch"):
        resolve_target(None, None, None, str(tmp_path))
    (tmp_path / "result.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        resolve_target(None, None, None, str(tmp_path))


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv,message", [
    (["--space", "nb201", "--arch", "|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "--protocol", "nb201-12"],
     "not a NAS-Bench-201 architecture"),
    (["--space", "nb201", "--arch", "15625", "--protocol", "nb201-12"], "out of range"),
    (["--space", "nb201", "--arch", "0", "--protocol", "nb201-13"], "unknown protocol"),
    (["--space", "nb201", "--arch", "0", "--protocol", "darts"], "trains goldnas"),
    (["--space", "nb201", "--arch", "0", "--protocol", "nb201-12", "--split", "cifar100"], "--split"),
    (["--space", "nb201", "--arch", "0", "--protocol", "nb201-12", "--amp", "fp8"], "--amp"),
    (["--space", "nb201", "--arch", "0", "--protocol", "nb201-12", "--device", "tpu"], "--device"),
    (["--space", "nb201", "--arch", "0", "--protocol", "nb201-12", "--data", "/nonexistent/cifar"], "does not exist"),
    (["--space", "goldnas", "--genotype", "/nonexistent/g.json", "--protocol", "darts"], "does not exist"),
    (["--space", "mobilenet", "--arch", "0", "--protocol", "nb201-12"], "--space"),
    (["--space", "nb201", "--protocol", "nb201-12"], "needs --arch"),
])
def test_bad_input_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                       message: str) -> None:
    out = tmp_path / "out"
    assert main(["train", *argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_genotype_that_does_not_fit_the_space(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    g = tmp_path / "g.json"
    g.write_text(json.dumps({"cells": [[["sep_conv_3x3", 0, 7]]] * 3}))  # target node 7 does not exist
    assert main(["train", "--space", "goldnas", "--genotype", str(g), "--protocol", "darts", "--out",
                 str(tmp_path / "out")]) == 2
    assert "GOLD-NAS" in capsys.readouterr().err and not (tmp_path / "out").exists()
    g.write_text("[1, 2")
    assert main(["train", "--space", "goldnas", "--genotype", str(g), "--protocol", "darts", "--out",
                 str(tmp_path / "out")]) == 2


def test_corrupt_data_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "cifar10_train_0.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip file")
    assert main(["train", *SMOKE, "--data", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "--data" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_out_dir_holding_another_run_is_left_untouched(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     tiny_data: str) -> None:
    SMOKE = [*TINY, "--data", tiny_data]  # noqa: N806
    out = tmp_path / "run"
    assert main(["train", *SMOKE, "--epochs", "1", "--out", str(out)]) == 0
    before = _tree_digest(out)
    capsys.readouterr()
    for extra in (["--epochs", "2"], ["--epochs", "2", "--resume"], ["--epochs", "1"],
                  ["--epochs", "1", "--seed", "9"]):
        assert main(["train", *SMOKE, *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--out" in err
        assert _tree_digest(out) == before
    # a directory with foreign files, and a file in place of the directory
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["train", *SMOKE, "--epochs", "1", "--out", str(other)]) == 2
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    # a finished run resumed with the same settings is a no-op that rewrites the same result
    assert main(["train", *SMOKE, "--epochs", "1", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "result.json").read_text())["epochs_done"] == 1


def test_corrupt_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, tiny_data: str) -> None:
    SMOKE = [*TINY, "--data", tiny_data]  # noqa: N806
    out = tmp_path / "run"
    assert main(["train", *SMOKE, "--epochs", "2", "--out", str(out), "--stop-after", "1"]) == 0
    (out / "checkpoint.pt").write_bytes(b"garbage")
    assert main(["train", *SMOKE, "--epochs", "2", "--out", str(out), "--resume"]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == b"garbage"


def test_cost_counter_follows_the_nb201_rule() -> None:
    from goldnas_fast.nb201 import build_network
    from goldnas_fast.train.costs import count_flops_m, count_params_m

    for index, params, flops in ((0, 0.129306, 15.64737), (11, 0.802426, 113.95137), (284, 0.101306, 11.71521)):
        net = build_network(index)
        assert count_params_m(net) == pytest.approx(params, abs=1e-9)
        assert count_flops_m(net, net) == pytest.approx(flops, abs=1e-9)
