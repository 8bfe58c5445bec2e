"""The epoch loop: SGD by a :class:`~goldnas_fast.train.protocols.Protocol`, per-epoch logs and checkpoints.

Reproducibility: every random draw of epoch ``e`` (shuffling, augmentation, drop-path) comes from
seeds derived from ``(seed, e)``, and the checkpoint written after each epoch holds the model,
the optimizer (momentum buffers), the history and the RNG states. A run stopped after epoch ``k``
and resumed therefore ends bit-identical, on CPU, to an uninterrupted run with the same seed.

On a GPU the loop runs without a host synchronization per step: the data stay on the device
(:class:`~goldnas_fast.data.DeviceLoader`), the loss and the correct count are summed on the device and
read when the progress bar refreshes (every ``refresh_every`` steps) and once per epoch, and with
``cuda_graphs`` each step replays one captured CUDA graph (:mod:`goldnas_fast.nn.steps`, which says
when it is re-captured). ``cudnn_benchmark`` autotunes convolutions for the few static shapes (the
training batch, the last smaller batch, the evaluation batch); the algorithms it picks depend on timing,
so two CUDA runs are then not guaranteed to be bit-identical.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from goldnas_fast.data.loader import epoch_seed
from goldnas_fast.errors import UserError
from goldnas_fast.nn.graphed import GraphBackend
from goldnas_fast.precision import PRECISIONS, autocast, precision
from goldnas_fast.runs import RunDir
from goldnas_fast.train.protocols import Protocol
from goldnas_fast.nn.steps import EagerSteps, GraphedSteps

__all__ = ["AMP_MODES", "TrainOptions", "Trainer", "padded_avg_pool", "precision"]

AMP_MODES = PRECISIONS  # the old name
Batch = tuple[torch.Tensor, torch.Tensor]

# Streams of per-epoch randomness (epoch_seed(seed, epoch, stream)); fixed numbers so that adding a
# stream never shifts another. Weight initialisation uses STREAM_INIT of epoch 0.
STREAM_GLOBAL, STREAM_DATA, STREAM_INIT = 1, 2, 3


@dataclasses.dataclass
class TrainOptions:
    """How (not what) to train: none of these change the protocol.

    Attributes:
        seed: run seed; weights are initialised by the caller, per-epoch randomness derives from it.
        device: where the model and data live.
        channels_last: NHWC memory format for the model and its inputs.
        amp: ``'fp32'`` (default), ``'tf32'`` or ``'bf16'`` (autocast).
        progress: draw a tqdm bar per epoch (on stderr).
        stop_after: stop (as if interrupted) once this many epochs are done; for tests and resumption.
        eval_every: evaluate every this many epochs, and always after the last.
        refresh_every: batches between progress-bar refreshes (each refresh synchronises the device).
        cuda_graphs: replay each training step from a captured graph (CUDA, or a stand-in ``graph_backend``).
        cudnn_benchmark: ``torch.backends.cudnn.benchmark`` during the run (CUDA only).
        graph_backend: capture backend for ``cuda_graphs`` (default CUDA graphs; tests pass
            :class:`~goldnas_fast.nn.graphed.EagerGraphs`).
    """

    seed: int
    device: torch.device
    channels_last: bool = False
    amp: str = "fp32"
    progress: bool = True
    stop_after: int | None = None
    eval_every: int = 1
    refresh_every: int = 10
    cuda_graphs: bool = False
    cudnn_benchmark: bool = False
    graph_backend: GraphBackend | None = None


TrainBatches = Callable[[torch.Generator], Iterator[Batch]]
EvalBatches = Callable[[], Iterator[Batch]]


class Trainer:
    """Trains ``model`` by ``protocol`` and records each epoch in ``run``.

    Args:
        model: returns logits, or ``(logits, aux_logits)`` in training mode when the protocol has an
            auxiliary weight. A ``drop_path_prob`` attribute, if present, is set every epoch.
        protocol: the (possibly overridden) protocol.
        run: the run directory (log, checkpoints).
        train_batches: ``f(generator)`` yields the augmented, normalised training batches of one epoch
            (float NCHW, int64 labels) in an order drawn from ``generator``, a CPU generator seeded
            from ``(seed, epoch)`` (e.g. :meth:`goldnas_fast.data.DeviceLoader.epoch_batches`).
        n_train: number of training images per epoch (for images/s).
        eval_sets: name -> ``f()`` yielding normalised evaluation batches (no augmentation).
        options: seed, device and numeric options.
    """

    def __init__(self, model: nn.Module, protocol: Protocol, run: RunDir, train_batches: TrainBatches,
                 n_train: int, eval_sets: Mapping[str, EvalBatches], options: TrainOptions) -> None:
        self.model, self.protocol, self.run, self.options = model, protocol, run, options
        self.train_batches, self.n_train, self.eval_sets = train_batches, n_train, dict(eval_sets)
        self.device = options.device
        if options.channels_last:
            self.model.to(memory_format=torch.channels_last)
            if self.device.type == "cuda" and padded_avg_pool(self.model):
                warnings.warn("channels_last on CUDA with nn.AvgPool2d(padding > 0): its backward is wrong for "
                              "channels_last inputs in some PyTorch versions (pytorch/pytorch#188344)", stacklevel=2)
        self.optimizer = protocol.make_optimizer(self.model.parameters())
        before = self._clip if protocol.grad_clip is not None else None
        if options.cuda_graphs:
            if self.device.type != "cuda" and options.graph_backend is None:
                raise UserError("CUDA graphs need --device cuda")
            self.steps: EagerSteps | GraphedSteps = GraphedSteps(self._step_fn, self.optimizer, before,
                                                                 graphs=options.graph_backend)
        else:
            self.steps = EagerSteps(self._step_fn, self.optimizer, before)
        self._graph_drop: float | None = None
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.epochs_done = 0

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"epochs_done": self.epochs_done, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "history": self.history,
                "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds, "rng": rng,
                "protocol": self.protocol.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            if state["protocol"] != self.protocol.to_dict():
                raise UserError(f"checkpoint in {self.run.path} was written under another protocol")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.history = list(state["history"])
            self.train_seconds = float(state["train_seconds"])
            self.eval_seconds = float(state["eval_seconds"])
            self.epochs_done = int(state["epochs_done"])
            torch.set_rng_state(state["rng"]["torch"])
            if self.device.type == "cuda" and "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"checkpoint in {self.run.path} does not fit this run ({type(exc).__name__}: {exc})") \
                from None

    def resume(self) -> bool:
        """Loads the run's checkpoint if there is one; drops log lines written after it."""
        state = self.run.load_checkpoint()
        if state is None:
            self.run.truncate_log(0)
            return False
        self.load_state_dict(state)
        self.run.truncate_log(self.epochs_done)
        return True

    # ----------------------------------------------------------------------------------------- steps
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.options.amp, self.device, graphed=self.options.cuda_graphs)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def _loss(self, out: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits): cross-entropy, plus ``aux_weight`` times the auxiliary head's."""
        if isinstance(out, (tuple, list)):
            logits, aux = out[0], (out[1] if len(out) > 1 else None)
        else:
            logits, aux = out, None
        loss = F.cross_entropy(logits.float(), y)
        if self.protocol.aux_weight > 0 and aux is not None and self.model.training:
            loss = loss + self.protocol.aux_weight * F.cross_entropy(aux.float(), y)
        return loss, logits

    def _clip(self) -> None:
        nn.utils.clip_grad_norm_(self.model.parameters(), self.protocol.grad_clip)

    def _step_fn(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and loss of one training batch: ``(loss, correct top-1 count)``, no host sync."""
        with self.autocast():
            out = self.model(x)
        loss, logits = self._loss(out, y)
        return loss, (logits.detach().argmax(1) == y).sum()

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch (0-based ``epoch``): returns loss, accuracy, lr, seconds and images/s."""
        p, model = self.protocol, self.model
        torch.manual_seed(epoch_seed(self.options.seed, epoch, STREAM_GLOBAL))  # drop-path, dropout
        # A CPU generator: the data order is then the same on every device (DeviceLoader moves it).
        gen = torch.Generator().manual_seed(epoch_seed(self.options.seed, epoch, STREAM_DATA))
        lr = p.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        drop = p.drop_path_at(epoch)
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = drop
            if drop != self._graph_drop:  # a Python float the captured forward has baked in
                self.steps.invalidate()
                self._graph_drop = drop
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        bar = self._bar(epoch)
        _sync(self.device)
        t0 = time.perf_counter()
        for step, (x, y) in enumerate(self.train_batches(gen), 1):
            loss, right = self.steps(self._prepare(x), y)
            n = y.shape[0]
            seen += n
            loss_sum += loss.double() * n
            correct += right
            if bar is not None and (step % self.options.refresh_every == 0):
                self._refresh(bar, step, loss_sum, correct, seen, lr, t0)
        _sync(self.device)
        seconds = time.perf_counter() - t0
        if seen == 0:
            raise UserError("the training split is empty")
        stats = {"train_loss": float(loss_sum) / seen, "train_acc": 100.0 * int(correct) / seen, "lr": lr,
                 "drop_path": drop, "train_seconds": seconds, "images_per_s": seen / seconds if seconds else math.inf}
        if not math.isfinite(stats["train_loss"]):
            raise RuntimeError(f"training diverged at epoch {epoch + 1}: loss {stats['train_loss']}")
        if bar is not None:
            self._refresh(bar, bar.total, loss_sum, correct, seen, lr, t0)
            bar.close()
        return stats

    @torch.no_grad()
    def evaluate(self, batches: EvalBatches) -> dict[str, float]:
        """Mean cross-entropy and top-1 accuracy (%) over one evaluation set, in eval mode."""
        self.model.eval()
        # sums stay on the device: one synchronisation per evaluation set, not per batch
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        for x, y in batches():
            with self.autocast():
                out = self.model(self._prepare(x))
            loss, logits = self._loss(out, y)
            loss_sum += loss.double() * y.shape[0]
            correct += (logits.argmax(1) == y).sum()
            seen += y.shape[0]
        n = max(seen, 1)
        return {"loss": float(loss_sum) / n, "acc": 100.0 * int(correct) / n, "images": seen}

    def fit(self) -> list[dict[str, Any]]:
        """Runs the remaining epochs (after :meth:`resume`, if called); returns the per-epoch history."""
        with precision(self.options.amp, self.device, self.options.cudnn_benchmark, option="--precision (--amp)"):
            for epoch in range(self.epochs_done, self.protocol.epochs):
                if self.options.stop_after is not None and self.epochs_done >= self.options.stop_after:
                    break
                stats = self.train_epoch(epoch)
                t0 = time.perf_counter()
                last = epoch + 1 == self.protocol.epochs
                evals = {name: self.evaluate(fn) for name, fn in self.eval_sets.items()} \
                    if last or (epoch + 1) % self.options.eval_every == 0 else {}
                record = {"epoch": epoch + 1, "epochs": self.protocol.epochs, **stats, "eval": evals,
                          "eval_seconds": time.perf_counter() - t0}
                self.history.append(record)
                self.train_seconds += stats["train_seconds"]
                self.eval_seconds += record["eval_seconds"]
                self.epochs_done = epoch + 1
                self.run.log(record)
                self.run.save_checkpoint(self.state_dict())
                self._print_epoch(record)
        return self.history

    # ----------------------------------------------------------------------------------------- output
    def _bar(self, epoch: int) -> Any:
        from goldnas_fast.progress import interactive, progress_bar

        if not (self.options.progress and interactive()):  # no terminal: the epoch line is the progress
            return None
        bs = self.protocol.batch_size
        return progress_bar(-(-self.n_train // bs), f"epoch {epoch + 1}/{self.protocol.epochs}", "batch",
                            leave=True, dynamic_ncols=True)

    @staticmethod
    def _refresh(bar: Any, step: int, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, lr: float,
                 t0: float) -> None:
        elapsed = time.perf_counter() - t0
        bar.n = step
        bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{100.0 * int(correct) / seen:.2f}",
                        lr=f"{lr:.4g}", img_s=f"{seen / elapsed:.0f}" if elapsed > 0 else "-", refresh=True)

    def _print_epoch(self, r: Mapping[str, Any]) -> None:
        if not self.options.progress:
            return
        ev = "  ".join(f"{k} {v['acc']:.2f}%" for k, v in r["eval"].items())
        print(f"epoch {r['epoch']}/{r['epochs']}: train loss {r['train_loss']:.4f} acc {r['train_acc']:.2f}%  "
              f"{ev}  lr {r['lr']:.4g}  {r['images_per_s']:.0f} img/s", file=sys.stderr)


def padded_avg_pool(model: nn.Module) -> bool:
    """Whether ``model`` holds an ``nn.AvgPool2d`` with padding, whose CUDA backward is wrong for channels_last
    inputs in some PyTorch versions (pytorch/pytorch#188344; seen with 2.11). The package's own
    :class:`~goldnas_fast.ops.pooling.PaddedAvgPool3x3` works around that bug and does not count."""
    from goldnas_fast.ops.pooling import PaddedAvgPool3x3

    return any(isinstance(m, nn.AvgPool2d) and not isinstance(m, PaddedAvgPool3x3) and m.padding not in (0, (0, 0))
               for m in model.modules())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
