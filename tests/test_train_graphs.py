"""The trainer's captured-step logic without a GPU: GraphedTrainStep and the trainer run on the EagerGraphs
stand-in (capture records, replay runs eagerly with fresh gradients) and must equal the eager loop bit for bit,
capturing once per learning-rate change or drop-path change and running odd-sized batches eagerly. The
``cuda`` test repeats the comparison with real CUDA graphs where a GPU is present."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from goldnas_fast.nn.graphed import EagerGraphs, GraphedTrainStep
from goldnas_fast.runs import RunDir
from goldnas_fast.train import get_protocol
from goldnas_fast.train.trainer import TrainOptions, Trainer

CUDA = torch.cuda.is_available()


class _Net(nn.Module):
    """Conv + BatchNorm (running statistics, a buffer the step updates) + linear head; optional drop-path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 10)
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        h = torch.relu(self.bn(self.conv(x)))
        if getattr(self, "drop_path_prob", 0.0) > 0 and self.training:
            h = h * (1 - self.drop_path_prob)  # a Python float the captured step bakes in
        return self.head(h.mean((2, 3)))


class _DropNet(_Net):
    def __init__(self) -> None:
        super().__init__()
        self.drop_path_prob = 0.0


def _data(device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(22, 3, 6, 6, generator=g).to(device), torch.randint(0, 10, (22,), generator=g).to(device)


def _batches(x: torch.Tensor, y: torch.Tensor, bs: int = 4):
    def epoch(gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(x.shape[0], generator=gen).to(x.device)
        for k in range(0, x.shape[0], bs):  # 22 = 5 x 4 + 2: the last batch is smaller
            idx = order[k:k + bs]
            yield x[idx], y[idx]
    return epoch


def _train(tmp: Path, name: str, protocol, net_cls, graphs: EagerGraphs | None, device: str = "cpu",
           real_graphs: bool = False) -> Trainer:
    torch.manual_seed(0)
    model = net_cls().to(device)
    x, y = _data(device)
    opts = TrainOptions(seed=4, device=torch.device(device), progress=False, cuda_graphs=graphs is not None or real_graphs,
                        graph_backend=graphs)
    trainer = Trainer(model, protocol, RunDir(tmp / name, "train", {"n": name}), _batches(x, y), 22,
                      {"held": lambda: iter([(x[:8], y[:8])])}, opts)
    trainer.fit()
    return trainer


def _same(a: Trainer, b: Trainer) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    strip = ("train_seconds", "images_per_s", "eval_seconds")
    ha = [{k: v for k, v in r.items() if k not in strip} for r in a.history]
    hb = [{k: v for k, v in r.items() if k not in strip} for r in b.history]
    assert ha == hb


PROTOCOL = get_protocol("nb201-12").with_overrides(epochs=3, batch_size=4, lr=0.05)


def test_lr_change_recaptures_and_replay_equals_eager(tmp_path: Path) -> None:
    eager = _train(tmp_path, "eager", PROTOCOL, _Net, None)
    graphs = EagerGraphs()
    graphed = _train(tmp_path, "graphed", PROTOCOL, _Net, graphs)
    _same(eager, graphed)
    assert len({r["lr"] for r in graphed.history}) == 3
    assert graphed.steps.captures == 3  # one per epoch: every epoch has its own learning rate
    # per epoch: batches 1-3 warm up (the new lr invalidated the graph), 4 captures and replays, 5 replays,
    # the smaller 6th runs eagerly (no event)
    per_epoch = ["warmup"] * 3 + ["capture", "replay", "replay"]
    assert graphs.events == per_epoch * 3
    assert graphed.model.forwards == eager.model.forwards


def test_constant_lr_captures_once(tmp_path: Path) -> None:
    flat = dataclasses.replace(PROTOCOL, lr_min=PROTOCOL.lr)
    assert len({flat.lr_at(e) for e in range(3)}) == 1
    graphs = EagerGraphs()
    graphed = _train(tmp_path, "graphed", flat, _Net, graphs)
    assert graphed.steps.captures == 1
    assert graphs.events == ["warmup"] * 3 + ["capture"] + ["replay"] * (2 + 5 + 5)
    _same(_train(tmp_path, "eager", flat, _Net, None), graphed)


def test_drop_path_change_recaptures_even_at_constant_lr(tmp_path: Path) -> None:
    p = dataclasses.replace(get_protocol("darts").with_overrides(epochs=3, batch_size=4), lr_min=0.025,
                            aux_weight=0.0)
    graphs = EagerGraphs()
    graphed = _train(tmp_path, "graphed", p, _DropNet, graphs)
    assert [r["drop_path"] for r in graphed.history] == [p.drop_path_at(e) for e in range(3)]
    assert graphed.steps.captures == 3 and graphs.events.count("warmup") == 9
    _same(_train(tmp_path, "eager", p, _DropNet, None), graphed)  # clipping inside the replayed step too


def test_graphed_train_step_recapture_rules_on_the_stand_in() -> None:
    torch.manual_seed(0)
    net = _Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    graphs = EagerGraphs()
    step = GraphedTrainStep(lambda a, b: nn.functional.cross_entropy(net(a), b), [opt], warmup=2, graphs=graphs)
    x, y = _data()
    for _ in range(4):
        step(x[:4], y[:4])
    assert graphs.events == ["warmup", "warmup", "capture", "replay", "replay"] and step.captures == 1
    opt.param_groups[0]["momentum"] = 0.5  # any optimizer scalar, not only lr
    step(x[:4], y[:4])
    assert not step.captured and graphs.events[-1] == "warmup"
    step.invalidate()
    for _ in range(3):
        step(x[:4], y[:4])
    assert step.captures == 2 and graphs.events[-4:] == ["warmup", "warmup", "capture", "replay"]
    with pytest.raises(ValueError, match="images"):
        step(x[:3], y[:3])


def test_trainer_refuses_cuda_graphs_on_the_cpu_without_a_stand_in(tmp_path: Path) -> None:
    from goldnas_fast.errors import UserError

    with pytest.raises(UserError, match="CUDA graphs need --device cuda"):
        Trainer(_Net(), PROTOCOL, RunDir(tmp_path / "r", "train", {}), _batches(*_data()), 22, {},
                TrainOptions(seed=0, device=torch.device("cpu"), progress=False, cuda_graphs=True))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_graphed_trainer_matches_eager(tmp_path: Path) -> None:
    eager = _train(tmp_path, "eager", PROTOCOL, _Net, None, device="cuda")
    graphed = _train(tmp_path, "graphed", PROTOCOL, _Net, None, device="cuda", real_graphs=True)
    assert graphed.steps.captures == 3
    sa, sb = eager.model.state_dict(), graphed.model.state_dict()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-5, atol=1e-6, msg=k)
    for ra, rb in zip(eager.history, graphed.history):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        assert rb["train_acc"] == ra["train_acc"]


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_batches_and_replayed_steps_do_not_synchronize(tmp_path: Path) -> None:
    """After the capture, building a batch on the device (crop, flip, normalise, Cutout) and replaying the step
    never wait for the GPU (torch.cuda.set_sync_debug_mode raises on any implicit synchronization)."""
    from goldnas_fast.data import DeviceLoader

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 6, 6), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    loader = DeviceLoader(images, labels, 4, device="cuda", seed=0, augment=True, cutout=2)
    torch.manual_seed(0)
    trainer = Trainer(_Net().cuda(), PROTOCOL, RunDir(tmp_path / "r", "train", {}), loader.epoch_batches, 64, {},
                      TrainOptions(seed=0, device=torch.device("cuda"), progress=False, cuda_graphs=True))
    from tests.conftest import assert_replays_without_sync

    assert_replays_without_sync(trainer.steps, loader.epoch_batches(torch.Generator().manual_seed(1)))


def test_batches_and_steps_read_nothing_back_to_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU stand-in of the check above: while batches are built and steps (warm-up, capture, replay) run, no
    tensor is turned into a Python value (item, bool, int, float, tolist), which on a GPU would wait for it."""
    from goldnas_fast.data import DeviceLoader

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 6, 6), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    loader = DeviceLoader(images, labels, 4, seed=0, augment=True, cutout=2)
    torch.manual_seed(0)
    trainer = Trainer(_Net(), PROTOCOL, RunDir(tmp_path / "r", "train", {}), loader.epoch_batches, 64, {},
                      TrainOptions(seed=0, device=torch.device("cpu"), progress=False, cuda_graphs=True,
                                   graph_backend=EagerGraphs()))
    batches = loader.epoch_batches(torch.Generator().manual_seed(1))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tensor was read back to the host")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    steps = 0
    for x, y in batches:
        trainer.steps(x, y)
        steps += 1
    monkeypatch.undo()
    assert steps == 16 and trainer.steps.captures == 1
