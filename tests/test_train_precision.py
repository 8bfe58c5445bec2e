"""--precision fp32|tf32|bf16 and the layout / graph switches of `goldnas-fast train`: bf16 autocasts the forward
on the CPU too while the master weights, their gradients and the optimizer state stay float32; --amp is the old
name; auto switches resolve by device; bad values are one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from goldnas_fast.cli import main
from goldnas_fast.runs import RunDir
from goldnas_fast.train import get_protocol
from goldnas_fast.train.trainer import TrainOptions, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny runs; see tests/conftest.py

ALL_SKIP = 1835
TINY = ["--space", "nb201", "--arch", str(ALL_SKIP), "--protocol", "nb201-12", "--batch-size", "16", "--no-progress",
        "--epochs", "1"]


def _fit(tmp: Path, amp: str) -> tuple[Trainer, list[torch.dtype]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10))
    seen: list[torch.dtype] = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    p = get_protocol("nb201-12").with_overrides(epochs=2, batch_size=8)
    trainer = Trainer(model, p, RunDir(tmp / amp, "train", {"amp": amp}), lambda gen: iter([(x[:8], y[:8]), (x[8:], y[8:])]),
                      16, {"v": lambda: iter([(x, y)])}, TrainOptions(seed=0, device=torch.device("cpu"), amp=amp,
                                                                   progress=False))
    trainer.fit()
    return trainer, seen


def test_bf16_autocasts_on_the_cpu_with_float32_master_weights(tmp_path: Path) -> None:
    bf, seen_bf = _fit(tmp_path, "bf16")
    fp, seen_fp = _fit(tmp_path, "fp32")
    assert set(seen_bf) == {torch.bfloat16} and set(seen_fp) == {torch.float32}
    for p in bf.model.parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
    for state in bf.optimizer.state.values():
        assert state["momentum_buffer"].dtype == torch.float32
    assert all(b.dtype in (torch.float32, torch.int64) for b in bf.model.buffers())
    w_bf, w_fp = bf.model[0].weight, fp.model[0].weight
    assert not torch.equal(w_bf, w_fp)  # bf16 really changed the arithmetic ...
    torch.testing.assert_close(w_bf, w_fp, rtol=0.05, atol=0.02)  # ... but trains the same network
    assert bf.history[-1]["eval"]["v"]["acc"] >= 0


def test_precision_flag_and_its_old_name_record_the_same_run(tmp_path: Path, tiny_data: str) -> None:
    assert main(["train", *TINY, "--data", tiny_data, "--precision", "bf16", "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *TINY, "--data", tiny_data, "--amp", "bf16", "--out", str(tmp_path / "b")]) == 0
    ca, cb = (json.loads((tmp_path / d / "config.json").read_text()) for d in "ab")
    assert ca == cb and ca["config"]["amp"] == "bf16"
    ra, rb = (json.loads((tmp_path / d / "result.json").read_text()) for d in "ab")
    assert ra["final"] == rb["final"] and ra["amp"] == "bf16"
    assert ra["cuda_graphs"] is False and ra["cudnn_benchmark"] is False and ra["channels_last"] is False


@pytest.mark.parametrize("flags,channels_last", [([], False), (["--channels-last"], True),
                                                 (["--channels-last", "on"], True), (["--channels-last", "off"], False),
                                                 (["--channels-last", "auto"], False)])
def test_channels_last_switch_resolves_per_device(tmp_path: Path, tiny_data: str, flags: list[str],
                                                  channels_last: bool) -> None:
    out = tmp_path / "r"
    assert main(["train", *TINY, "--data", tiny_data, "--max-train", "32", *flags, "--out", str(out),
                 "--stop-after", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["channels_last"] is channels_last


@pytest.mark.parametrize("argv,message", [
    (["--precision", "fp8"], "--precision"),
    (["--amp", "fp16"], "--amp"),
    (["--channels-last", "sideways"], "--channels-last must be one of auto, on, off"),
    (["--cuda-graphs", "maybe"], "--cuda-graphs must be one of"),
    pytest.param(["--cuda-graphs", "on"], "--cuda-graphs on needs --device cuda",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")),
])
def test_bad_switches_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                          message: str) -> None:
    out = tmp_path / "out"
    assert main(["train", *TINY, *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fast_path_records_its_switches_and_matches_the_eager_loop(tmp_path: Path) -> None:
    """On a GPU: auto turns on CUDA graphs, channels_last and cudnn.benchmark; bf16 trains; the graphed fp32
    run follows the eager one (embedded sample: 16 steps per epoch, so each epoch captures and replays)."""
    argv = [*TINY, "--epochs", "2", "--device", "cuda"]
    assert main(["train", *argv, "--precision", "bf16", "--out", str(tmp_path / "bf16")]) == 0
    r = json.loads((tmp_path / "bf16" / "result.json").read_text())
    assert r["cuda_graphs"] and r["channels_last"] and r["cudnn_benchmark"] and r["amp"] == "bf16"
    runs = {}
    for graphs in ("on", "off"):
        out = tmp_path / f"graphs-{graphs}"
        assert main(["train", *argv, "--cuda-graphs", graphs, "--channels-last", "off", "--out", str(out)]) == 0
        runs[graphs] = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    for on, off in zip(runs["on"], runs["off"]):
        assert on["train_loss"] == pytest.approx(off["train_loss"], rel=1e-3)  # cudnn.benchmark may pick others
        assert on["eval"]["x-valid"]["acc"] == pytest.approx(off["eval"]["x-valid"]["acc"], abs=1.0)


def test_channels_last_auto_keeps_nchw_for_padded_avg_pool_on_cuda(capsys: pytest.CaptureFixture) -> None:
    """pytorch/pytorch#188344: auto must not pick channels_last on CUDA for a network with a raw nn.AvgPool2d(padding=1);
    decided from a meta-device build, which draws nothing from the RNG. (No CUDA needed: only the decision runs.)"""
    from goldnas_fast.train.cli import _channels_last
    from goldnas_fast.train.targets import resolve_target

    cuda, p = torch.device("cuda"), get_protocol("nb201-12")

    class RawPoolTarget:  # a network the torch bug hits
        @staticmethod
        def build(init_channels: int, auxiliary: bool = False) -> nn.Module:
            return nn.Sequential(nn.Conv2d(3, init_channels, 3), nn.AvgPool2d(3, 1, padding=1))

    rng = torch.get_rng_state()
    assert _channels_last("auto", cuda, RawPoolTarget(), p) is False
    assert "pytorch/pytorch#188344" in capsys.readouterr().err
    assert _channels_last("on", cuda, RawPoolTarget(), p) is True  # asked for explicitly (the trainer warns)
    assert torch.equal(rng, torch.get_rng_state())
    pool = resolve_target("nb201", "|avg_pool_3x3~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|none~2|",
                          None, None)
    skip = resolve_target("nb201", str(ALL_SKIP), None, None)
    rng = torch.get_rng_state()
    # NB201's avg_pool_3x3 is the package's bug-robust PaddedAvgPool3x3, so auto may pick channels_last.
    assert _channels_last("auto", cuda, pool, p) is True
    assert _channels_last("auto", cuda, skip, p) is True
    assert _channels_last("on", cuda, pool, p) is True  # asked for explicitly (the trainer warns)
    assert _channels_last("auto", torch.device("cpu"), skip, p) is False
    assert torch.equal(rng, torch.get_rng_state())


def test_padded_avg_pool_counts_only_the_pools_hit_by_the_torch_bug() -> None:
    from goldnas_fast.ops.pooling import PaddedAvgPool3x3
    from goldnas_fast.train.trainer import padded_avg_pool

    assert padded_avg_pool(torch.nn.Sequential(torch.nn.AvgPool2d(3, 1, padding=1)))
    assert not padded_avg_pool(torch.nn.Sequential(torch.nn.AvgPool2d(2)))
    assert not padded_avg_pool(torch.nn.Sequential(PaddedAvgPool3x3()))
