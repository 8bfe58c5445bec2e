"""The GPU switches of the search side, tested on the CPU: the cells' layout choice on CUDA, --precision
for ``search``, CUDA-graph capture and re-capture in the GOLD-NAS and DARTS loops (behind the eager
stand-in), and the search's device-resident data."""
from __future__ import annotations

import pytest
import torch

from goldnas_fast.nn.cell import _preferred_layout, prefers_channels_last


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_auto_layout_is_channels_last_for_4d_float_cuda_tensors(dtype):
    assert prefers_channels_last("cuda", dtype, 4)


@pytest.mark.parametrize("device_type, dtype, dim", [
    ("cuda", torch.float64, 4),     # no fast NHWC path in cuDNN for double
    ("cuda", torch.float32, 3),     # not an image batch
    ("cpu", torch.float16, 4),      # oneDNN has no fast float16 NHWC convolutions
    ("cpu", torch.float64, 4),
    ("meta", torch.float32, 4),     # any other device keeps its layout
])
def test_auto_layout_keeps_the_layout_elsewhere(device_type, dtype, dim):
    assert not prefers_channels_last(device_type, dtype, dim)


def test_auto_layout_on_cpu_is_unchanged():
    x = torch.randn(2, 3, 4, 5)
    assert _preferred_layout(x).is_contiguous(memory_format=torch.channels_last)
    assert _preferred_layout(x.double()).is_contiguous()
    assert _preferred_layout(x.half()).is_contiguous()
    y = torch.randn(2, 3, 4)
    assert _preferred_layout(y) is y



@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_cell_weights_follow_the_cells_layout_on_cuda_only(backend):
    from goldnas_fast.nn.cell import DAGCell, match_cell_weights_layout
    from goldnas_fast.spaces import make_space

    net = make_space("nb201", C=4, N=1, backend=backend).network

    def layouts():
        return {name: p.is_contiguous() for name, p in net.named_parameters() if p.dim() == 4}

    before = layouts()
    assert all(before.values())
    assert match_cell_weights_layout(net, "cpu") == 0 and layouts() == before  # CPU runs stay as they were
    changed = match_cell_weights_layout(net, "cuda")
    cells = [m for m in net.modules() if isinstance(m, DAGCell)]
    cell_weights = {id(p) for c in cells for p in c.parameters() if p.dim() == 4}
    if backend == "reference":
        assert changed == 0 and layouts() == before
        return
    assert changed == len(cells) > 0
    for name, p in net.named_parameters():
        if p.dim() != 4:
            continue
        if id(p) in cell_weights:
            one_by_one = p.shape[-2:] == (1, 1)  # both layouts at once
            assert p.is_contiguous(memory_format=torch.channels_last) and (one_by_one or not p.is_contiguous()), name
        else:
            assert p.is_contiguous(), name  # the stem and the other layers keep NCHW

# --------------------------------------------------------------------------------------------- precision
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from goldnas_fast.cli import main  # noqa: E402
from goldnas_fast.errors import UserError  # noqa: E402
from goldnas_fast.nn.graphed import EagerGraphs  # noqa: E402
from goldnas_fast.precision import PRECISIONS, autocast, precision  # noqa: E402
from goldnas_fast.search.distributed import Context  # noqa: E402
from goldnas_fast.search.gpu import StepOptions  # noqa: E402

TINY_NB201 = ["--C", "4", "--N", "1", "--max-train", "64", "--batch-size", "16", "--no-progress"]
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("single_thread")


def search(out: Path, *args: str) -> int:
    return main(["search", "--out", str(out), *args])


def float_tensors(state, where="state"):
    """(where, tensor) of every floating tensor in a nested checkpoint state."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point():
            yield where, state
    elif isinstance(state, dict):
        for k, v in state.items():
            yield from float_tensors(v, f"{where}.{k}")
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from float_tensors(v, f"{where}[{i}]")


@pytest.mark.parametrize("algo", ["goldnas", "darts"])
def test_bf16_search_runs_end_to_end_with_float32_weights_gates_and_states(tmp_path, algo):
    out = tmp_path / "run"
    assert search(out, *TINY_NB201, "--algo", algo, "--epochs", "2", "--precision", "bf16") == 0
    assert json.loads((out / "config.json").read_text())["config"]["precision"] == "bf16"
    assert (out / "result.json").is_file()
    state = torch.load(out / "checkpoint.pt", weights_only=False)["algo"]
    tensors = list(float_tensors(state))
    assert any("alpha" in w or "arch" in w for w, _ in tensors)  # the gates are in the checkpoint
    assert {t.dtype for _, t in tensors} == {torch.float32}, [w for w, t in tensors if t.dtype != torch.float32]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(r["loss"] == r["loss"] and r["loss"] > 0 for r in log)  # finite, not NaN


def test_bf16_forward_runs_under_autocast_and_fp32_does_not(monkeypatch):
    """The search's forward sees autocast (bf16 logits) only under --precision bf16."""
    from goldnas_fast.spaces.adapter import SearchSpace

    seen: dict[str, torch.dtype] = {}
    original = SearchSpace.loss

    def loss(self, images, labels, module=None):
        ce, logits = original(self, images, labels, module)
        seen[torch.is_autocast_enabled("cpu") and "autocast" or "plain"] = logits.dtype
        return ce, logits

    monkeypatch.setattr(SearchSpace, "loss", loss)
    for mode in ("fp32", "bf16"):
        from goldnas_fast.search.onelevel import GoldNasSearch

        algo = _goldnas(mode, graphs=None)
        algo.run_epoch(0)
        assert isinstance(algo, GoldNasSearch)
    assert seen == {"plain": torch.float32, "autocast": torch.bfloat16}


def test_resume_refuses_another_precision(tmp_path, capsys):
    out = tmp_path / "run"
    assert search(out, *TINY_NB201, "--epochs", "1") == 0
    # fp32 leaves the configuration as earlier versions wrote it, so their runs still resume
    assert "precision" not in json.loads((out / "config.json").read_text())["config"]
    capsys.readouterr()
    assert search(out, *TINY_NB201, "--epochs", "1", "--precision", "bf16", "--resume") == 2
    assert "precision" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp16"], "--precision must be one of fp32, tf32, bf16"),
    (["--cuda-graphs"], "--cuda-graphs needs --device cuda"),
    (["--algo", "darts", "--cuda-graphs"], "--cuda-graphs needs --device cuda"),
])
def test_bad_switches_are_refused_naming_the_option(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert search(out, *TINY_NB201, *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_step_options_refuse_graphs_with_several_processes():
    with pytest.raises(UserError, match="one process"):
        StepOptions(graphs=EagerGraphs()).check(CPU, world_size=2)
    with pytest.raises(UserError, match="--precision"):
        StepOptions(precision="half")


def test_precision_helper_is_shared_and_changes_nothing_on_the_cpu():
    from goldnas_fast.train import trainer

    assert trainer.precision is precision and trainer.AMP_MODES == PRECISIONS
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    with precision("bf16", CPU, cudnn_benchmark=True):
        assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32) == flags
    with autocast("fp32", CPU):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("bf16", CPU, graphed=True):
        assert torch.is_autocast_enabled("cpu") and not torch.is_autocast_cache_enabled()


# ------------------------------------------------------------------------------------------ CUDA graphs
def _goldnas(precision_mode: str = "fp32", graphs=None, seed: int = 1):
    from goldnas_fast.search.onelevel import GoldNasSearch, GoldNasSearchConfig
    from goldnas_fast.search.supernet_setup import prepare_supernet

    config = GoldNasSearchConfig.from_options({"C": 4, "N": 1, "max_train": 64, "batch_size": 8, "seed": seed,
                                               "lambda0": 1.0, "epochs": 6, "precision": precision_mode})
    ctx = Context(device=CPU)
    setup = prepare_supernet(config, ctx, gate="sigmoid")
    algo = GoldNasSearch(setup.space, config.gold(), config.one_level(), CPU, ctx=ctx,
                         steps=StepOptions(precision=precision_mode, graphs=graphs))
    algo.loaders, algo.epochs = setup.loaders, config.epochs
    return algo


def _darts(graphs=None, seed: int = 1):
    from goldnas_fast.search.darts import DartsConfig, DartsSearch, DartsSearchConfig
    from goldnas_fast.search.supernet_setup import prepare_supernet

    config = DartsSearchConfig.from_options({"C": 4, "N": 1, "max_train": 96, "batch_size": 8, "seed": seed,
                                             "epochs": 3})
    ctx = Context(device=CPU)
    setup = prepare_supernet(config, ctx, gate="softmax", split=True)
    algo = DartsSearch(setup.space, DartsConfig(lr_max=config.lr_weights), CPU, ctx=ctx,
                       steps=StepOptions(graphs=graphs))
    algo.loaders, algo.epochs = setup.loaders, config.epochs
    return algo


def _run(algo, epochs: int, seed: int = 1) -> list[dict]:
    from goldnas_fast.search.runner import _seed_epoch

    records = []
    for epoch in range(epochs):
        _seed_epoch(seed, epoch)
        before = algo.steps.captures
        record = algo.run_epoch(epoch)
        record["captures"] = algo.steps.captures - before
        records.append(record)
    return records


def _assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _plain_goldnas_epoch(algo, epoch: int) -> dict:
    """The GOLD-NAS epoch as the loop computed it before the step runners (one eager step per batch)."""
    for loader in algo.loaders:
        loader.set_epoch(epoch)
    lam = algo.controller.lam
    net = algo.space.network
    net.train()
    weights = [p for p in net.weight_parameters() if p.requires_grad]
    totals = torch.zeros(3)
    seen = 0
    for images, labels in algo.loaders[0]:
        ce, logits = algo.space.loss(images, labels, module=algo.module)
        reg = algo.resource(algo.alpha, algo._alive_t)
        loss = ce + lam * reg
        algo.weights_opt.zero_grad(set_to_none=True)
        algo.alpha_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(weights, algo.opt.grad_clip)
        algo.alpha_opt.step()
        algo.weights_opt.step()
        n = labels.numel()
        seen += n
        totals += torch.stack([ce.detach() * n, (logits.detach().argmax(1) == labels).sum(), reg.detach() * n])
    loss, correct, reg = (totals / seen).tolist()
    decision = algo.end_epoch()
    return {"loss": loss, "accuracy": 100.0 * correct, "regularizer": reg, "pruned": int(decision.n_pruned)}


def test_goldnas_eager_runner_equals_the_plain_loop_bit_for_bit():
    from goldnas_fast.search.runner import _seed_epoch

    plain, runner = _goldnas(), _goldnas()
    for epoch in range(4):
        _seed_epoch(1, epoch)
        want = _plain_goldnas_epoch(plain, epoch)
        _seed_epoch(1, epoch)
        got = runner.run_epoch(epoch)
        assert {k: got[k] for k in want} == want
    _assert_same(plain.state_dict(), runner.state_dict())


def test_goldnas_graphs_recapture_exactly_after_pruning_and_equal_the_eager_loop():
    eager, graphs = _goldnas(), EagerGraphs()
    graphed = _goldnas(graphs=graphs)
    want, got = _run(eager, 6), _run(graphed, 6)
    assert sum(r["pruned"] for r in want) > 0 and any(r["pruned"] == 0 for r in want[:-1])
    assert len({r["lambda"] for r in want}) > 1  # lambda changes: it must not need a re-capture
    # the stand-in re-runs the Python step, so it cannot see a baked-in number: check lambda is a tensor
    assert isinstance(graphed._lam, torch.Tensor) and not isinstance(eager._lam, torch.Tensor)
    # one capture in the first epoch, then one in each epoch that follows a pruning event, none otherwise
    expected = [1] + [int(r["pruned"] > 0) for r in want[:-1]]
    assert [r["captures"] for r in got] == expected
    assert graphs.events.count("capture") == sum(expected)
    assert graphs.events.count("replay") > graphs.events.count("warmup")  # most steps replay
    strip = ["seconds", "captures"]
    assert [{k: v for k, v in r.items() if k not in strip} for r in got] == \
        [{k: v for k, v in r.items() if k not in strip} for r in want]
    _assert_same(eager.state_dict(), graphed.state_dict())


def test_goldnas_graphs_recapture_after_a_learning_rate_change():
    graphs = EagerGraphs()
    algo = _goldnas(graphs=graphs)
    _run(algo, 1)
    assert algo.steps.captures == 1
    for group in algo.weights_opt.param_groups:
        group["lr"] *= 0.5
    algo.train_epoch(algo.loaders[0], algo.controller.lam)
    assert algo.steps.captures == 2
    algo.train_epoch(algo.loaders[0], algo.controller.lam * 2)  # lambda alone: no re-capture
    assert algo.steps.captures == 2


def test_goldnas_resume_invalidates_the_captured_step():
    graphs = EagerGraphs()
    algo = _goldnas(graphs=graphs)
    _run(algo, 1)
    assert algo.steps.graphed.captured
    algo.load_state_dict(algo.state_dict())  # new optimizer buffers: a captured step would be stale
    assert not algo.steps.graphed.captured


def test_darts_graphs_recapture_per_learning_rate_change_and_equal_the_eager_loop():
    eager, graphs = _darts(), EagerGraphs()
    graphed = _darts(graphs=graphs)
    want, got = _run(eager, 3), _run(graphed, 3)
    assert len({r["lr"] for r in want}) == 3  # the cosine schedule changes the lr every epoch
    assert [r["captures"] for r in got] == [1, 1, 1]
    assert "replay" in graphs.events
    strip = ["seconds", "captures"]
    assert [{k: v for k, v in r.items() if k not in strip} for r in got] == \
        [{k: v for k, v in r.items() if k not in strip} for r in want]
    _assert_same(eager.state_dict(), graphed.state_dict())
    assert not graphed.alpha_opt.defaults["capturable"]  # capturable only for real CUDA graphs


def test_search_data_stay_on_the_device_without_workers():
    """The search's loaders are DeviceLoaders: resident data, augmentation by tensor ops, no worker processes."""
    from goldnas_fast.data.loader import DeviceLoader

    for algo in (_goldnas(), _darts()):
        assert algo.loaders and all(isinstance(loader, DeviceLoader) for loader in algo.loaders)
        assert all(not hasattr(loader, "num_workers") for loader in algo.loaders)


CUDA = torch.cuda.is_available() and torch.backends.cuda.is_built()
READ_BACKS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")


def _step_inputs(algo):
    """The per-step inputs of one epoch as ``train_epoch`` feeds them to ``algo.steps``, built lazily (the
    epoch's order and augmentation seed are drawn on the host here, once, not per step)."""
    if len(algo.loaders) == 1:
        return iter(algo.loaders[0])
    pairs = zip(iter(algo.loaders[0]), iter(algo.loaders[1]))
    return ((torch.stack((x, xv)), torch.stack((y, yv))) for (x, y), (xv, yv) in pairs)


@pytest.mark.parametrize("make", [_goldnas, _darts], ids=["goldnas", "darts"])
def test_search_steps_read_nothing_back_to_the_host(monkeypatch, make):
    """While the search's batches are built and its steps (warm-up, capture, replay) run, no tensor is turned
    into a Python value, which on a GPU would wait for it (CPU stand-in of the CUDA test below)."""
    algo = make(graphs=EagerGraphs())
    algo.loaders[0].set_epoch(0)
    if len(algo.loaders) == 1:
        algo.train_epoch([], algo.controller.lam)  # sets lambda's tensor as an epoch does
    for loader in algo.loaders:
        loader.set_epoch(1)
    inputs = _step_inputs(algo)
    # DARTS' Adam reads its step count, a host tensor without CUDA graphs (on a GPU with graphs, where it is
    # capturable, it lives on the device and is not read; the CUDA test below checks that)
    def host_counts():
        return [st["step"] for st in algo.alpha_opt.state.values() if "step" in st] if len(algo.loaders) > 1 else []

    def refusing(name):
        original = getattr(torch.Tensor, name)

        def refuse(self, *args: object, **kwargs: object):
            if any(self is t for t in host_counts()):
                return original(self, *args, **kwargs)
            raise AssertionError("a tensor was read back to the host")

        return refuse

    for name in READ_BACKS:
        monkeypatch.setattr(torch.Tensor, name, refusing(name))
    steps = 0
    for x, y in inputs:
        algo.steps(x, y)
        steps += 1
    monkeypatch.undo()
    assert steps >= 5 and algo.steps.captures == 1


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("algo_name", ["goldnas", "darts"])
@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_cuda_graphed_search_matches_eager(tmp_path, algo_name, mode):
    """On a GPU: --cuda-graphs gives the eager search's records (up to the rounding of another kernel order)."""
    common = [*TINY_NB201, "--algo", algo_name, "--epochs", "3", "--device", "cuda", "--precision", mode]
    assert search(tmp_path / "eager", *common) == 0
    assert search(tmp_path / "graphs", *common, "--cuda-graphs") == 0
    logs = [[json.loads(line) for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]
            for d in ("eager", "graphs")]
    assert len(logs[0]) == len(logs[1]) == 3
    for a, b in zip(*logs):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-2 if mode == "bf16" else 1e-3)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("algo_name", ["goldnas", "darts"])
def test_cuda_replayed_search_steps_do_not_synchronize(algo_name):
    """After the capture, building a batch and replaying the search's step never wait for the GPU
    (torch.cuda.set_sync_debug_mode raises on any implicit synchronization)."""
    from goldnas_fast.search.darts import DartsConfig, DartsSearch, DartsSearchConfig
    from goldnas_fast.search.onelevel import GoldNasSearch, GoldNasSearchConfig
    from goldnas_fast.search.supernet_setup import prepare_supernet

    cuda = torch.device("cuda")
    options = {"C": 4, "N": 1, "max_train": 256, "batch_size": 8, "seed": 1, "device": "cuda", "cuda_graphs": True}
    ctx = Context(device=cuda)
    if algo_name == "goldnas":
        config = GoldNasSearchConfig.from_options(options)
        setup = prepare_supernet(config, ctx, gate="sigmoid")
        algo = GoldNasSearch(setup.space, config.gold(), config.one_level(), cuda, ctx=ctx, steps=config.steps())
        algo.loaders = setup.loaders
        algo.train_epoch([], algo.controller.lam)
    else:
        config = DartsSearchConfig.from_options(options)
        setup = prepare_supernet(config, ctx, gate="softmax", split=True)
        algo = DartsSearch(setup.space, DartsConfig(), cuda, ctx=ctx, steps=config.steps())
        algo.loaders = setup.loaders
    from tests.conftest import assert_replays_without_sync

    assert_replays_without_sync(algo.steps, _step_inputs(algo))


def test_darts_resume_fits_the_gates_adam_to_this_runs_steps():
    """A checkpoint written with CUDA graphs (capturable Adam, step count on the device) resumes eagerly with a
    non-capturable Adam whose step count is back on the host, and the values go on unchanged."""
    algo = _darts()
    _run(algo, 1)
    import copy

    state = copy.deepcopy(algo.state_dict())  # a checkpoint holds copies, not the live buffers
    saved = state["alpha_opt"]
    for group in saved["param_groups"]:
        group["capturable"] = True  # as a graphed run on a GPU writes it
    resumed = _darts()
    resumed.load_state_dict(state)
    assert [g["capturable"] for g in resumed.alpha_opt.param_groups] == [False]
    steps = [st["step"] for st in resumed.alpha_opt.state.values()]
    assert steps and all(s.device.type == "cpu" and s.dtype == torch.float32 for s in steps)
    want, got = _run(algo, 2)[1:], _run(resumed, 2)[1:]  # both continue with epoch index 0, 1
    assert [r["loss"] for r in got] == [r["loss"] for r in want]
