"""The enlarged GOLD-NAS space as a search space: independent cells, several operators per edge."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from goldnas_fast.spaces.adapter import SearchSpace
from goldnas_fast.spaces.goldnas.ops import DEFAULT_OPS
from goldnas_fast.spaces.goldnas.search_network import GoldNasSearchNetwork

__all__ = ["GoldNasSpace", "FLOPS_MIN"]

FLOPS_MIN = 240.0  # M, the CIFAR-10 stop rule of the GOLD-NAS space (docs/method/goldnas.md §3.8)
AUX_WEIGHT = 0.4  # DARTS' auxiliary-loss weight, kept by GOLD-NAS (docs/method/goldnas.md §3.1)


class GoldNasSpace(SearchSpace):
    """The GOLD-NAS supernet with sigmoid gates; architectures are genotypes (JSON).

    Args:
        C, layers, num_classes, backend, lean, auxiliary: as
            :class:`~goldnas_fast.spaces.goldnas.search_network.GoldNasSearchNetwork`.
        ops: candidate operators (``None``: the space's default pair).
    """

    name = "goldnas"
    # GOLD-NAS's CIFAR-10 search setting (docs/method/goldnas.md §4.1)
    supernet_defaults: ClassVar[dict[str, Any]] = {"C": 36, "batch_size": 96}
    flops_min = FLOPS_MIN

    def __init__(self, C: int = 36, layers: int = 14, num_classes: int = 10, ops: Sequence[str] | None = None,
                 backend: str = "fused", lean: bool = False, auxiliary: bool = True) -> None:
        kwargs = {} if ops is None else {"ops": tuple(ops)}
        self.network = GoldNasSearchNetwork(C=C, layers=layers, num_classes=num_classes, auxiliary=auxiliary,
                                            backend=backend, lean=lean, **kwargs)
        self.aux_weight = AUX_WEIGHT if auxiliary else 0.0

    @classmethod
    def space_kwargs(cls, config: Any) -> dict[str, Any]:
        return {**super().space_kwargs(config), "layers": config.layers, "ops": config.ops}

    @classmethod
    def record(cls, config: Any) -> dict[str, Any]:
        return {"layers": config.layers, "ops": list(config.ops if config.ops is not None else DEFAULT_OPS)}

    def architecture(self) -> dict[str, Any]:
        return self.network.genotype().to_json()

    def architecture_flops_m(self, arch: Any) -> float:
        """FLOPs of the current discrete network (the additive model the search prunes by)."""
        return float(self.network.discrete_flops_m())
