"""DARTS first order on the NAS-Bench-201 supernet: the NAS-Bench-201 paper's DARTS-V1 protocol.

Softmax gates over the 5 operators of each edge (``none`` included), bi-level: per step one Adam
step of the architecture parameters on a batch of the ``valid`` half (lr 3e-4, betas (0.5, 0.999),
weight decay 1e-3), then one SGD step of the weights on a batch of the ``train`` half (Nesterov
momentum 0.9, weight decay 5e-4, cosine lr 0.025 -> 0.001 per epoch, gradient clip 5), first-order
(no unrolled step). The architecture is the per-edge argmax (``docs/method/nasbench201.md`` §1.6, §2.2).

Both steps of a pair of batches run as one step of the step runner (:mod:`goldnas_fast.search.gpu`), on
the two batches stacked: eagerly, or, with CUDA graphs, replayed from one captured step that is
re-captured when the cosine schedule changes the weights' learning rate (once per epoch). With CUDA graphs
on a GPU the gates' Adam is ``capturable`` (its step count lives on the device).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from goldnas_fast.errors import ConfigError
from goldnas_fast.nn.cell import match_cell_weights_layout
from goldnas_fast.search.algorithm import Progress, SupernetSearch, epoch_line
from goldnas_fast.search.config import SupernetConfig, option
from goldnas_fast.search.distributed import Context
from goldnas_fast.search.gpu import StepOptions
from goldnas_fast.spaces.adapter import SearchSpace

if TYPE_CHECKING:
    from goldnas_fast.runs import RunDir

__all__ = ["DartsConfig", "DartsSearch", "DartsSearchConfig"]


@dataclass
class DartsConfig:
    """Hyper-parameters of DARTS-V1 as configured for NAS-Bench-201."""

    lr_max: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3

    def lr_at(self, epoch: int, epochs: int) -> float:
        """Cosine schedule evaluated per epoch, from lr_max to lr_min."""
        return self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1 + math.cos(math.pi * epoch / max(epochs, 1)))


@dataclasses.dataclass(frozen=True)
class DartsSearchConfig(SupernetConfig):
    """``goldnas-fast search --algo darts``: the supernet options plus the weights' learning rate
    (default :class:`DartsConfig`'s ``lr_max``); 50 epochs as NAS-Bench-201's DARTS-V1, on the embedded
    sample too."""

    algo = "darts"
    spaces = ("nb201",)
    default_epochs = 50
    sample_epochs = 50

    lr_weights: float = option(DartsConfig.lr_max, "--lr-weights")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lr_weights > 0:
            raise ConfigError(type(self).__name__, "lr_weights", "> 0", self.lr_weights)

    def space_note(self) -> str:
        return "is the NAS-Bench-201 baseline"

    def record(self) -> dict[str, Any]:
        return {**super().record(), "lr_weights": self.lr_weights}


class DartsSearch(SupernetSearch):
    """Bi-level first-order DARTS on a softmax-gated supernet.

    Args:
        space: the supernet with softmax gates.
        cfg: the hyper-parameters.
        device: where the supernet runs.
        ctx: the distributed context (a single process by default).
        steps: precision and CUDA graphs (default: float32, eager).
    """

    config_type = DartsSearchConfig

    def __init__(self, space: SearchSpace, cfg: DartsConfig, device: torch.device, ctx: Context | None = None,
                 steps: StepOptions | None = None) -> None:
        self.space, self.cfg, self.device = space, cfg, device
        self.ctx = ctx or Context(device=device)
        self.step_options = steps or StepOptions()
        self.step_options.check(device, self.ctx.world_size)
        net = space.network.to(device)
        match_cell_weights_layout(net, device.type)  # CUDA: the cells run channels_last, so do their weights
        self.module = self.ctx.wrap(net)
        self.alpha = space.alpha()
        self.weights_opt = torch.optim.SGD(net.weight_parameters(), lr=cfg.lr_max, momentum=cfg.momentum,
                                           weight_decay=cfg.weight_decay, nesterov=True)
        capturable = {"capturable": True} if self.step_options.capturable(device) else {}
        self.alpha_opt = torch.optim.Adam([self.alpha], lr=cfg.arch_lr, betas=cfg.arch_betas,
                                          weight_decay=cfg.arch_weight_decay, **capturable)
        self._weights = list(net.weight_parameters())
        self.steps = self.step_options.runner(self._step_fn, [self.weights_opt], self._clip)
        self.loaders: list[Any] = []  # set by build(): the train half, then the valid half
        self.epochs = 0
        self._images_per_epoch = 0
        self._last_arch: str | None = None  # the previous epoch's architecture, to record changes

    @classmethod
    def build(cls, config: DartsSearchConfig, ctx: Context) -> DartsSearch:
        from goldnas_fast.search.supernet_setup import prepare_supernet

        setup = prepare_supernet(config, ctx, gate="softmax", split=True)
        algo = cls(setup.space, DartsConfig(lr_max=config.lr_weights), ctx.device, ctx=ctx, steps=config.steps())
        algo.attach(setup, config.epochs, ctx)
        return algo

    def epoch_line(self, record: dict[str, Any]) -> str | None:
        # the architecture's cost in the benchmark's evaluation network (C=16, N=5), as the table has it
        return epoch_line(record, "NAS-Bench-201 network FLOPs")

    def run_epoch(self, epoch: int, progress: Progress | None = None) -> dict[str, Any]:
        """One epoch; DARTS has no plateaus, so every epoch whose argmax architecture is new is recorded."""
        for loader in self.loaders:
            loader.set_epoch(epoch)
        stats = self.train_epoch(self.loaders[0], self.loaders[1], epoch, self.epochs, progress=progress)
        arch = self.space.architecture()
        recorded = arch != self._last_arch
        self._last_arch = arch
        return {"epoch": epoch + 1, **stats, "arch": arch, "flops_m": self.space.describe(arch)["flops_m"],
                "recorded": recorded, "stop": False, "stop_reason": None}

    def result(self, run_dir: RunDir, history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        """The trajectory of argmax architectures and the final one, with their table facts."""
        from goldnas_fast.search.results import finish_nb201_result, stop_reason

        recorded = [{"epoch": r["epoch"], "arch": r["arch"]} for r in history if r.get("recorded")]
        return finish_nb201_result(run_dir, run_dir.config, self.space.architecture(), recorded, seconds,
                                   extra={"epochs_run": len(history), "stop_reason": stop_reason(history)})

    def train_epoch(self, train_batches, valid_batches, epoch: int, epochs: int, progress=None) -> dict[str, float]:
        net = self.space.network
        net.train()
        for group in self.weights_opt.param_groups:
            group["lr"] = self.cfg.lr_at(epoch, epochs)
        self._weights = list(net.weight_parameters())
        totals = torch.zeros(2, device=self.device)  # loss, correct (summed over images)
        seen = 0
        for (x, y), (xv, yv) in zip(train_batches, valid_batches):
            x, y, xv, yv = (t.to(self.device, non_blocking=True) for t in (x, y, xv, yv))
            _, stats = self.steps(torch.stack((x, xv)), torch.stack((y, yv)))
            totals += stats
            n = y.numel()
            seen += n
            if progress is not None:
                progress({"n": n})
        totals = self.ctx.all_reduce_sum(totals)
        seen = self.ctx.all_reduce_sum(torch.tensor(float(seen), device=self.device))
        loss, correct = (totals / seen.clamp_min(1)).cpu().tolist()
        return {"loss": loss, "accuracy": 100.0 * correct, "lr": self.weights_opt.param_groups[0]["lr"]}

    def _step_fn(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gates' step on the validation batch (``images[1]``), then the forward of the weights' step on
        the training batch (``images[0]``): ``(loss, [loss * n, correct])``, all on the device."""
        x, xv = images.unbind(0)
        y, yv = labels.unbind(0)
        self._arch_step(xv, yv)
        with self.step_options.autocast(self.device):
            loss, logits = self.space.loss(x, y, module=self.module)
        n = y.numel()
        return loss, torch.stack([loss.detach() * n, (logits.detach().argmax(1) == y).sum()])

    def _clip(self) -> None:
        torch.nn.utils.clip_grad_norm_([p for p in self._weights if p.grad is not None], self.cfg.grad_clip)

    def _arch_step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One Adam step of the gates on a validation batch.

        Only the gate gradient is needed: ``autograd.grad`` skips the weight gradients (which first-order
        DARTS discards anyway) and runs outside the DDP wrapper, so they are neither computed nor
        all-reduced; the gate gradient is averaged over the ranks explicitly, as DDP would.
        """
        with self.step_options.autocast(self.device):
            arch_loss, _ = self.space.loss(images, labels)
        (grad,) = torch.autograd.grad(arch_loss, [self.alpha])
        self.alpha.grad = self.ctx.all_reduce_mean_(grad)
        self.alpha_opt.step()

    def _set_capturable(self, capturable: bool) -> None:
        """Makes the gates' Adam fit this run's steps after loading a checkpoint written with or without CUDA
        graphs (the saved parameter group carries its own ``capturable`` flag and step-count device)."""
        for group in self.alpha_opt.param_groups:
            group["capturable"] = capturable
        for st in self.alpha_opt.state.values():
            if "step" in st:
                st["step"] = st["step"].to(self.device if capturable else torch.device("cpu"), torch.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"network": self.space.network.state_dict(), "weights_opt": self.weights_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.space.network.load_state_dict(state["network"])
        self.weights_opt.load_state_dict(state["weights_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self._set_capturable(self.step_options.capturable(self.device))
        self._last_arch = self.space.architecture()  # the gates give the last epoch's architecture back
