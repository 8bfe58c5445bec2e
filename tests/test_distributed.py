"""Data-parallel search on torch.distributed: 2 gloo processes on the CPU, launched by torchrun.

What is compared, and to what tolerance:

* **Ranks against each other: exactly.** The gates, a checksum of the weights, the surviving pairs,
  lambda and the architecture of rank 1 equal rank 0's bit for bit after every epoch.
* **2 processes against 1 process with the same global batch: the tolerance of the reduction order.**
  Each rank normalizes BatchNorm by its own 8 images (``SyncBatchNorm`` runs on GPUs only), so the
  1-process reference feeds the same 16 images per step as the two ranks' 8-image chunks, each chunk
  through the network on its own (:class:`RankChunks`), with the same augmentation (the loader's rank
  streams), one thread like each rank. The two computations then differ only in the order float32 sums
  are taken (DDP's all-reduce vs. autograd's accumulation over the chunks; the regularizer's gradient
  added before vs. after averaging). Measured over 5 GOLD-NAS epochs (20 steps, gate lr 1.0, lambda up
  to 14, 12 pairs pruned) and 2 DARTS epochs: live gates within 4e-6 of the largest live gate, losses
  within 1e-7, the weights' sum within 2e-9 (relative); with 2 threads in the reference 4.4e-5, 3e-7,
  5e-6. The test allows ``GATE_RTOL`` = 1e-3 and ``STAT_RTOL`` = 1e-5. A real mistake misses them by
  far: rank-local (not averaged) DARTS gate gradients give gate gaps of 0.44 and weight-sum gaps of
  4e-5 to 6e-4, and BatchNorm over all 16 images (the plain 1-process run) gives gate gaps of 0.25 to
  0.7, loss gaps of 2e-3 to 1e-2, other pruning and other architectures. Pruning, lambda and the
  architectures must be identical. Pruned logits (about -1e4, float32 spacing 1e-3) are not compared.

The loader's shards give the ranks together the images of the 1-process step (augmentation is drawn per
rank). Command-line runs check that only rank 0 writes into the run directory, that a rank that raises (or
hangs past ``GOLDNAS_DIST_TIMEOUT``) ends the whole job with an error instead of a hang, and that
``--resume`` under torchrun continues an interrupted run to the same result as an uninterrupted one.

Run by pytest, this file is also the torchrun worker: ``python tests/test_distributed.py MODE ...``
(see :func:`_worker_main`); the worker records per-rank traces into a folder the test owns.
"""
from __future__ import annotations

import builtins
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SEED = 3
GLOBAL_BATCH = 16
EPOCHS_GOLD, EPOCHS_DARTS = 5, 2
GATE_RTOL = 1e-3  # live gates, relative to the largest live gate
STAT_RTOL = 1e-5  # epoch loss and the sum of all weights
TINY = ["--device", "cpu", "--C", "4", "--N", "1", "--max-train", "64", "--batch-size", "16", "--lambda0", "1.0",
        "--seed", str(SEED)]
RUN_FILES = {"config.json", "log.jsonl", "checkpoint.pt", "result.json"}


# ----------------------------------------------------------------------------------------- launching
class Finished:
    """A finished launch: return code, output and wall time."""

    def __init__(self, returncode: int, stdout: str, stderr: str, seconds: float) -> None:
        self.returncode, self.stdout, self.stderr, self.seconds = returncode, stdout, stderr, seconds

    def explain(self) -> str:
        return f"rc={self.returncode} after {self.seconds:.1f}s\n--- stdout\n{self.stdout[-3000:]}\n" \
               f"--- stderr\n{self.stderr[-6000:]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(args: list[str], *, nproc: int = 2, cwd: Path, timeout_s: float = 120.0,
             dist_timeout_s: float = 60.0) -> Finished:
    """``torchrun --nproc-per-node NPROC ARGS`` on this machine, killed with its workers after ``timeout_s``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "GOLDNAS_DIST_TIMEOUT": str(dist_timeout_s), "PYTHONUNBUFFERED": "1"}
    # static rendezvous on a free port: a second faster to start than --standalone's c10d rendezvous
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={nproc}",
           "--master-addr=127.0.0.1", f"--master-port={_free_port()}", *args]
    start = time.monotonic()
    # its own session, so that on a hang the launcher *and* its workers can be killed together
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun {' '.join(args)} still running after {timeout_s}s (a hang)\n{err[-6000:]}")
    return Finished(proc.returncode, out, err, time.monotonic() - start)


def worker(mode: str, trace_dir: Path, *args: str, **kw: Any) -> Finished:
    return torchrun([str(Path(__file__).resolve()), mode, str(trace_dir), *args], **kw)


def traces(trace_dir: Path, nproc: int = 2) -> list[dict[str, Any]]:
    return [json.loads((trace_dir / f"rank{r}.json").read_text()) for r in range(nproc)]


# ----------------------------------------------------------------------------------- the search setup
class RankChunks(nn.Module):
    """A network that runs each rank's chunk of a global batch on its own (BatchNorm per chunk).

    With the chunks of all ranks concatenated in rank order, one process computes what ``ranks``
    DDP processes compute: the cross-entropy of the concatenated logits is the mean of the ranks' means
    (equal chunks), so its gradient is the ranks' averaged gradient. Everything else (gates, masks,
    architecture) is the wrapped network's.
    """

    def __init__(self, net: nn.Module, ranks: int) -> None:
        super().__init__()
        self.net, self.ranks = net, ranks

    def forward(self, x: torch.Tensor) -> Any:
        outs = [self.net(chunk) for chunk in x.chunk(self.ranks)]
        if isinstance(outs[0], tuple):
            return tuple(None if parts[0] is None else torch.cat(parts) for parts in zip(*outs))
        return torch.cat(outs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["net"], name)


def build(algo: str, ranks: list[int], world: int, ctx):
    """The tiny NB201 search: space, algorithm, and one loader per rank in ``ranks`` (of ``world``)."""
    from goldnas_fast.data.cifar import load_cifar10
    from goldnas_fast.data.loader import DeviceLoader
    from goldnas_fast.data.split import seeded_split
    from goldnas_fast.search.controller import GoldNasConfig
    from goldnas_fast.search.darts import DartsConfig, DartsSearch
    from goldnas_fast.search.onelevel import GoldNasSearch, OneLevelConfig
    from goldnas_fast.spaces import make_space

    data = load_cifar10(None, max_train=64, max_test=0)
    torch.manual_seed(SEED)
    space = make_space("nb201", gate="softmax" if algo == "darts" else "sigmoid", C=4, N=1)
    if len(ranks) > 1:
        space.network = RankChunks(space.network, len(ranks))
    kw = dict(seed=SEED, augment=True, drop_last=True, world_size=world)
    splits = seeded_split(data.num_train) if algo == "darts" else (None,)
    loaders = [[DeviceLoader(data.train_images, data.train_labels, GLOBAL_BATCH // world, indices=idx, rank=r, **kw)
                for r in ranks] for idx in splits]
    if algo == "darts":
        return space, DartsSearch(space, DartsConfig(), ctx.device, ctx=ctx), loaders
    gold = GoldNasConfig(lambda0=1.0)
    return space, GoldNasSearch(space, gold, OneLevelConfig(), ctx.device, ctx=ctx), loaders


def global_batches(loaders, epoch: int):
    """The loaders' batches of ``epoch``, concatenated in rank order (one loader: its own batches)."""
    for loader in loaders:
        loader.set_epoch(epoch)
    for parts in zip(*loaders):
        yield torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def weights_checksum(space) -> float:
    return float(sum(p.detach().double().sum() for p in space.network.weight_parameters()))


def run_algo(algo: str, ranks: list[int], world: int, ctx) -> list[dict[str, Any]]:
    """Runs the tiny search; one record per epoch (everything the ranks must agree on)."""
    space, search, loaders = build(algo, ranks, world, ctx)
    trace = []
    for epoch in range(EPOCHS_GOLD if algo == "goldnas" else EPOCHS_DARTS):
        if algo == "goldnas":
            lam = search.controller.lam
            stats = search.train_epoch(global_batches(loaders[0], epoch), lam)
            decision = search.end_epoch()
            extra = {"lambda": lam, "pruned": decision.n_pruned, "alive": search.controller.alive.tolist()}
        else:
            stats = search.train_epoch(global_batches(loaders[0], epoch), global_batches(loaders[1], epoch),
                                       epoch, EPOCHS_DARTS)
            extra = {}
        trace.append({"loss": stats["loss"], "alpha": search.alpha.detach().flatten().tolist(),
                      "weights": weights_checksum(space), "arch": space.architecture(), **extra})
    return trace


def dead_node_run(ctx) -> dict[str, Any]:
    """GOLD-NAS after a pruning that leaves node 1 with no outgoing pair: its input conv gets no gradient.

    Plain DDP fails on such unused parameters at the next step; the search must keep training.
    """
    from goldnas_fast.nb201.arch import EDGES

    space, search, loaders = build("goldnas", [ctx.rank], ctx.world_size, ctx)
    out_of_1 = [p for p, (e, _) in enumerate(space.network.pairs) if EDGES[e][1] == 1]
    with torch.no_grad():
        search.alpha[out_of_1] = -20.0  # normalized weight ~0 <= xi_min: pruned at once
    search.end_epoch()
    alive = search.controller.alive.tolist()
    stats = [search.train_epoch(global_batches(loaders[0], e), 0.0)["loss"] for e in range(2)]
    return {"dead_pairs_pruned": not any(alive[p] for p in out_of_1), "loss": stats,
            "weights": weights_checksum(space)}


# ------------------------------------------------------------------------------------------- worker
def _record_writes(under: Path, log: list[str]) -> None:
    """Records every file opened for writing, or folder made, below ``under`` (a non-main rank must make none)."""
    under = str(under.resolve())
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def note(path: Any) -> None:
        if isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(under):
            log.append(os.fspath(path))

    def open_(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+"):
            note(file)
        return real_open(file, mode, *a, **k)

    def os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            note(path)
        return real_os_open(path, flags, *a, **k)

    def mkdir(path, *a, **k):
        note(path)
        return real_mkdir(path, *a, **k)

    builtins.open, os.open, os.mkdir = open_, os_open, mkdir


def _inject(fault: str, rank: int, trace: dict[str, Any]) -> None:
    """Wraps the search methods: record per-epoch state; on rank 1, raise or hang in epoch 2 (``fault``)."""
    from goldnas_fast.search.darts import DartsSearch
    from goldnas_fast.search.onelevel import GoldNasSearch

    epochs = trace.setdefault("epochs", [])
    gold_train, gold_end, darts_train = GoldNasSearch.train_epoch, GoldNasSearch.end_epoch, DartsSearch.train_epoch

    def faulty(batches, epoch: int):
        for step, batch in enumerate(batches):
            if fault != "none" and rank == 1 and epoch == 1 and step == 1:  # after one all-reduce of epoch 2
                if fault == "hang":
                    time.sleep(3600)
                raise RuntimeError("injected failure of rank 1 in epoch 2")
            yield batch

    def train_epoch(self, batches, *a, **k):
        return gold_train(self, faulty(batches, len(epochs)), *a, **k)

    def end_epoch(self):
        decision = gold_end(self)
        epochs.append({"alpha": self.alpha.detach().tolist(), "alive": self.controller.alive.tolist(),
                       "lambda": self.controller.lam, "arch": self.space.architecture(),
                       "weights": weights_checksum(self.space)})
        return decision

    def darts_train_epoch(self, train_batches, valid_batches, *a, **k):
        stats = darts_train(self, faulty(train_batches, len(epochs)), valid_batches, *a, **k)
        epochs.append({"alpha": self.alpha.detach().flatten().tolist(), "arch": self.space.architecture(),
                       "weights": weights_checksum(self.space)})
        return stats

    GoldNasSearch.train_epoch, GoldNasSearch.end_epoch = train_epoch, end_epoch
    DartsSearch.train_epoch = darts_train_epoch


def _worker_main(argv: list[str]) -> int:
    """``MODE TRACE_DIR OUT FAULT CLI_ARGS...``: the command-line search into ``OUT`` with ``FAULT``
    (``none``, ``raise``, ``hang``); mode ``algo+cli`` first runs the algorithm-level searches in the same
    process group (one launch instead of two), mode ``cli`` only the command line."""
    mode, trace_dir, out, fault, cli_args = argv[0], Path(argv[1]), Path(argv[2]), argv[3], argv[4:]
    rank = int(os.environ["RANK"])
    trace: dict[str, Any] = {"rank": rank}
    try:
        if mode == "algo+cli":
            from goldnas_fast.search import distributed

            ctx = distributed.init(True, "cpu")  # the command line's init() joins this group and closes it
            trace["goldnas"] = run_algo("goldnas", [rank], ctx.world_size, ctx)
            trace["darts"] = run_algo("darts", [rank], ctx.world_size, ctx)
            trace["dead_node"] = dead_node_run(ctx)
        if rank != 0:
            _record_writes(out, trace.setdefault("writes", []))
        _inject(fault, rank, trace)
        from goldnas_fast.cli import main

        return main(["search", "--out", str(out), *cli_args])
    finally:
        with builtins.open(trace_dir / f"rank{rank}.json", "w") as f:
            json.dump(trace, f)


# -------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> tuple[list[dict[str, Any]], Path, Finished]:
    """One launch: the algorithm-level runs, then an uninterrupted 2-process GOLD-NAS command-line search
    (also the resume test's reference). Returns the per-rank traces, the run directory and the launch."""
    base = tmp_path_factory.mktemp("baseline")
    run = worker("algo+cli", base, str(base / "run"), "none", *TINY, "--epochs", "4", cwd=base)
    assert run.returncode == 0, run.explain()
    return traces(base), base / "run", run


@pytest.mark.parametrize("n, world", [(64, 2), (70, 2), (50, 3), (101, 4)])
def test_rank_shards_of_a_step_are_the_one_process_batch(n, world):
    """Step k of all ranks together serves the images of step k of one process (global batch 4 * world)."""
    from goldnas_fast.data.loader import DeviceLoader

    images, labels = np.zeros((n, 4, 4, 3), np.uint8), np.arange(n)  # the label names the image
    one = DeviceLoader(images, labels, 4 * world, seed=1, drop_last=True)
    shards = [DeviceLoader(images, labels, 4, seed=1, drop_last=True, rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 7):
        for loader in (one, *shards):
            loader.set_epoch(epoch)
        steps = [sorted(y.tolist()) for _, y in one]
        sharded = [sorted(i for _, y in parts for i in y.tolist()) for parts in zip(*shards)]
        assert {len(s) for s in shards} == {len(one)} and len(steps) == n // (4 * world)
        assert sharded == steps


def _assert_ranks_identical(per_rank: list[list[dict[str, Any]]]) -> None:
    first = per_rank[0]
    assert first, "no epochs recorded"
    for other in per_rank[1:]:
        assert len(other) == len(first)
        for epoch, (a, b) in enumerate(zip(first, other)):
            for key in a:
                if key != "loss":  # the loss is each rank's all-reduced statistic: equal too, but not state
                    assert a[key] == b[key], f"epoch {epoch + 1}: {key} differs between ranks"


@pytest.mark.parametrize("algo", ["goldnas", "darts"])
def test_ranks_hold_identical_state(baseline, algo):
    _assert_ranks_identical([t[algo] for t in baseline[0]])


def _gate_gap(got: dict[str, Any], want: dict[str, Any]) -> float:
    """Largest difference of the live gate logits, relative to the largest live logit."""
    live = want.get("alive") or [True] * len(want["alpha"])
    scale = max(abs(a) for a, keep in zip(want["alpha"], live) if keep)
    return max(abs(a - b) for a, b, keep in zip(got["alpha"], want["alpha"], live) if keep) / scale


@pytest.mark.parametrize("algo", ["goldnas", "darts"])
def test_two_processes_match_one_process_with_the_same_global_batch(baseline, algo):
    from goldnas_fast.search.distributed import Context

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the remaining differences are the reduction order's
    try:
        reference = run_algo(algo, [0, 1], 2, Context(device=torch.device("cpu")))
    finally:
        torch.set_num_threads(threads)
    dist_run = baseline[0][0][algo]
    assert len(dist_run) == len(reference)
    for epoch, (d, r) in enumerate(zip(dist_run, reference)):
        where = f"{algo} epoch {epoch + 1}"
        assert d["arch"] == r["arch"], where
        for key in ("alive", "lambda", "pruned"):
            assert d.get(key) == r.get(key), f"{where}: {key}"
        assert _gate_gap(d, r) <= GATE_RTOL, f"{where}: gates differ by {_gate_gap(d, r):.1e} (relative)"
        assert d["loss"] == pytest.approx(r["loss"], rel=STAT_RTOL), where
        assert d["weights"] == pytest.approx(r["weights"], rel=STAT_RTOL), where
    if algo == "goldnas":
        assert sum(r["pruned"] for r in reference) > 0, "the tiny search must prune to test the rebuilds"


def test_trainable_parameters_that_no_longer_reach_the_loss_do_not_break_ddp(baseline):
    a, b = (t["dead_node"] for t in baseline[0])
    assert a["dead_pairs_pruned"]
    assert a == b


def test_cli_goldnas_ranks_agree_and_only_rank_0_writes(baseline):
    """``goldnas-fast search`` under torchrun without ``--distributed`` (implied by WORLD_SIZE=2)."""
    (t0, t1), out, run = baseline
    _assert_ranks_identical([t0["epochs"], t1["epochs"]])
    assert t1["writes"] == [], f"rank 1 wrote into the run directory: {t1['writes']}"
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]  # one writer: no duplicated lines
    result = json.loads((out / "result.json").read_text())
    assert t0["epochs"][-1]["arch"] in json.dumps(result)
    assert run.stdout.count("final architecture") == 1


def test_cli_darts_runs_under_torchrun(tmp_path):
    run = torchrun(["-m", "goldnas_fast.cli", "search", "--distributed", "--algo", "darts", *TINY, "--epochs", "2"],
                   cwd=tmp_path)
    assert run.returncode == 0, run.explain()
    (out,) = (tmp_path / "runs").iterdir()  # the default run directory, named once by rank 0
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    assert len((out / "log.jsonl").read_text().splitlines()) == 2


def test_failing_rank_stops_the_job_and_resume_finishes_it(baseline, tmp_path):
    (reference, _), baseline_out, _ = baseline
    out = tmp_path / "run"
    failed = worker("cli", tmp_path, str(out), "raise", *TINY, "--epochs", "4", cwd=tmp_path)
    assert failed.returncode != 0, failed.explain()
    assert "injected failure of rank 1" in failed.stderr
    log = (out / "log.jsonl").read_text().splitlines()
    assert len(log) == 1 and (out / "checkpoint.pt").exists() and not (out / "result.json").exists()

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    resumed = worker("cli", resumed_dir, str(out), "none", *TINY, "--epochs", "4", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.explain()
    t0, t1 = traces(resumed_dir)
    _assert_ranks_identical([t0["epochs"], t1["epochs"]])
    # the same computation as the uninterrupted run, restored from exact state: bitwise the same epochs
    assert t0["epochs"] == reference["epochs"][1:]  # the resumed run trained epochs 2..4
    got, want = (_log_without_times(path / "log.jsonl") for path in (out, baseline_out))
    assert got == want


def _log_without_times(path: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        r.pop("seconds")
    return records


def test_hanging_rank_times_out_instead_of_hanging(tmp_path):
    timeout_s = 6.0
    run = worker("cli", tmp_path, str(tmp_path / "run"), "hang", *TINY, "--epochs", "4", cwd=tmp_path,
                 dist_timeout_s=timeout_s, timeout_s=timeout_s + 60)
    assert run.returncode != 0, run.explain()
    assert "timed out" in run.stderr.lower(), run.explain()
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 1  # it was epoch 2's hang


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
