"""What a search algorithm sees of a search space: a supernet plus its loss and its architectures.

A :class:`SearchSpace` wraps a :class:`~goldnas_fast.nn.supernet.Supernet` and adds what the supernet
cannot know: the training loss (with an auxiliary head where there is one), the current discrete
architecture in the space's own JSON form, and the facts reported about it (its FLOPs and, where a
table exists, its accuracies). It also carries, as class attributes and class methods, what
``goldnas-fast search`` must know of the space before building it: the defaults of the supernet
options, the keyword arguments and ``config.json`` entries they become, the GOLD-NAS gate and stop
rules, and the writer of the result. A new space subclasses it in ``spaces/<name>/adapter.py`` and adds
one line to :data:`goldnas_fast.spaces.SPACES` (``docs/architecture.md``, "Where to add").
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from goldnas_fast.nn.gate_layout import GateLayout
from goldnas_fast.nn.supernet import Supernet

__all__ = ["SearchSpace"]


class SearchSpace:
    """Base class: a supernet with sigmoid (GOLD-NAS) or softmax (DARTS) gates."""

    name: str
    network: Supernet
    aux_weight: float = 0.0

    supernet_defaults: ClassVar[Mapping[str, Any]] = {}
    """Values of the search's supernet options (``C``, ``batch_size``, ...) that the user left unset."""
    sigmoid_gate: ClassVar[str | None] = None
    """The ``gate`` keyword argument that selects GOLD-NAS's sigmoid gates; ``None``: the space takes no
    ``gate`` argument (its gates are sigmoid gates)."""
    flops_min: ClassVar[float | None] = None
    """The default FLOPs floor (M) of GOLD-NAS's stop rule in this space; ``None``: the controller's."""
    stop_one_op_per_edge: ClassVar[bool] = False
    """Whether GOLD-NAS also stops once every edge keeps at most one operator."""
    result_writer: ClassVar[str] = "goldnas_fast.search.results:finish_goldnas_result"
    """``module:function`` that writes a supernet search's result, called as
    ``(run_dir, cfg, final_arch, history, seconds, extra=...)``; named, not imported, because the search
    layer sits above the spaces."""

    @classmethod
    def search_defaults(cls, sample: bool) -> dict[str, Any]:
        """The supernet option defaults; ``sample``: the search runs on the embedded sample."""
        return dict(cls.supernet_defaults)

    @classmethod
    def space_kwargs(cls, config: Any) -> dict[str, Any]:
        """Keyword arguments of the adapter for a search's supernet config (``search.config.SupernetConfig``)."""
        return {"C": config.C, "backend": config.backend, "lean": config.lean}

    @classmethod
    def record(cls, config: Any) -> dict[str, Any]:
        """The space's own entries of ``config.json`` (after the common ones), for a supernet config."""
        return {}

    def gate_layout(self) -> GateLayout:
        """The supernet's typed per-pair layout."""
        return self.network.gate_layout()

    def architecture(self) -> Any:
        """The current discrete architecture (JSON-able)."""
        raise NotImplementedError

    def architecture_flops_m(self, arch: Any) -> float:
        """FLOPs (M) of the discrete network ``arch``."""
        raise NotImplementedError

    def describe(self, arch: Any) -> dict[str, Any]:
        """JSON-able facts about ``arch``: FLOPs, params and, where a table exists, its accuracies."""
        return {"flops_m": self.architecture_flops_m(arch)}

    def alpha(self) -> torch.Tensor:
        """The gate logits."""
        (alpha,) = self.network.arch_parameters()
        return alpha

    def set_alive(self, alive: Sequence[bool]) -> None:
        self.network.set_alive(list(alive))

    def loss(self, images: torch.Tensor, labels: torch.Tensor, module: nn.Module | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy (plus the weighted auxiliary loss where the network has a head) and logits.

        ``module`` is what to call instead of the bare network (e.g. its DistributedDataParallel wrapper).
        """
        out = (module or self.network)(images)
        if isinstance(out, tuple):
            logits, aux = out
            loss = F.cross_entropy(logits, labels)
            if aux is not None and self.aux_weight:
                loss = loss + self.aux_weight * F.cross_entropy(aux, labels)
            return loss, logits
        return F.cross_entropy(out, labels), out
