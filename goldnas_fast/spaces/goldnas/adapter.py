"""The enlarged GOLD-NAS space as a search space: independent cells, several operators per edge."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from goldnas_fast.spaces.adapter import SearchSpace
from goldnas_fast.spaces.goldnas.search_network import GoldNasSearchNetwork

__all__ = ["GoldNasSpace"]

AUX_WEIGHT = 0.4  # DARTS' auxiliary-loss weight, kept by GOLD-NAS (docs/method/goldnas.md §3.1)


class GoldNasSpace(SearchSpace):
    """The GOLD-NAS supernet with sigmoid gates; architectures are genotypes (JSON).

    Args:
        C, layers, num_classes, backend, lean, auxiliary: as
            :class:`~goldnas_fast.spaces.goldnas.search_network.GoldNasSearchNetwork`.
        ops: candidate operators (``None``: the space's default pair).
    """

    name = "goldnas"

    def __init__(self, C: int = 36, layers: int = 14, num_classes: int = 10, ops: Sequence[str] | None = None,
                 backend: str = "fused", lean: bool = False, auxiliary: bool = True) -> None:
        kwargs = {} if ops is None else {"ops": tuple(ops)}
        self.network = GoldNasSearchNetwork(C=C, layers=layers, num_classes=num_classes, auxiliary=auxiliary,
                                            backend=backend, lean=lean, **kwargs)
        self.aux_weight = AUX_WEIGHT if auxiliary else 0.0

    def architecture(self) -> dict[str, Any]:
        return self.network.genotype().to_json()

    def architecture_flops_m(self, arch: Any) -> float:
        """FLOPs of the current discrete network (the additive model the search prunes by)."""
        return float(self.network.discrete_flops_m())
