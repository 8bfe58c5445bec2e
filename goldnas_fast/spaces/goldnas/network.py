"""The re-training network of a GOLD-NAS genotype (``docs/method/goldnas.md`` §6): exactly the genotype's cells.

Same skeleton as the super-network (stem, cells with reductions at ``L // 3`` and ``2L // 3``, auxiliary
head after cell ``2L // 3``, global pooling, linear classifier) and the same depth. Each cell computes
only its triples and concatenates its distinct targets, so output widths vary from cell to cell
(``len(concat) * C``); the next cells' 1x1 pre-processing convs take those widths. A cell input that no
triple reads gets no pre-processing conv (its output would be unused).
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple

import torch
from torch import nn

from goldnas_fast.nn.flops import count_macs
from goldnas_fast.spaces.goldnas.genotype import NUM_INPUTS, NUM_NODES, Genotype, Triple
from goldnas_fast.spaces.goldnas.heads import AuxiliaryHead, check_int, make_stem
from goldnas_fast.spaces.goldnas.ops import FactorizedReduce, ReLUConvBN, make_op

__all__ = ["GoldNasNetwork", "RetrainCell", "build_network", "network_cost", "drop_path", "STYLES", "Cost"]

STYLES = ("darts", "goldnas-code")
"""``'darts'``: DARTS re-training operators (affine BN, bare identity and pools, ``quark0/darts``).
``'goldnas-code'``: the unofficial GOLD-NAS re-training code (``cifar_train/model.py``): every cell BN
with ``affine=False``, ``skip_connect`` and pools followed by BN, as in search."""


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zeroes whole samples with probability ``drop_prob`` and rescales the others by ``1 / (1 - p)``."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class RetrainCell(nn.Module):
    """One discrete cell: node ``t`` = sum of ``op(node_s)`` over its triples; output = concat of targets."""

    def __init__(self, triples: tuple[Triple, ...], C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, style: str) -> None:
        super().__init__()
        affine = style == "darts"
        sources = {s for _, s, _ in triples}
        self.preprocess0: nn.Module | None = None
        self.preprocess1: nn.Module | None = None
        if 0 in sources:
            self.preprocess0 = (FactorizedReduce(C_pp, C, affine) if reduction_prev
                                else ReLUConvBN(C_pp, C, 1, 1, 0, affine))
        if 1 in sources:
            self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine)
        self.triples = triples
        self.concat = tuple(sorted({t for _, _, t in triples}))
        self.ops = nn.ModuleList()
        self._droppable: list[bool] = []
        for name, s, _ in triples:
            stride = 2 if reduction and s < NUM_INPUTS else 1
            self.ops.append(make_op(name, C, stride, affine, search=style == "goldnas-code"))
            # drop-path is never applied to identity ops (skip_connect at stride 1)
            self._droppable.append(not (name == "skip_connect" and stride == 1))

    @property
    def multiplier(self) -> int:
        """Number of concatenated nodes (output width = ``multiplier * C``)."""
        return len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states: list[torch.Tensor | None] = [
            self.preprocess0(s0) if self.preprocess0 is not None else None,
            self.preprocess1(s1) if self.preprocess1 is not None else None]
        apply_drop = self.training and drop_prob > 0.0
        for t in range(NUM_INPUTS, NUM_INPUTS + NUM_NODES):
            node = None
            for k, (_, s, target) in enumerate(self.triples):
                if target != t:
                    continue
                h = self.ops[k](states[s])
                if apply_drop and self._droppable[k]:
                    h = drop_path(h, drop_prob)
                node = h if node is None else node + h
            states.append(node)
        return torch.cat([states[t] for t in self.concat], dim=1)

    def extra_repr(self) -> str:
        return f"triples={list(self.triples)}, concat={list(self.concat)}"


class GoldNasNetwork(nn.Module):
    """Re-training network of a genotype; ``forward(x)`` returns ``(logits, aux_logits)``.

    ``aux_logits`` is None in eval mode or without the auxiliary head. Set ``drop_path_prob`` each epoch
    (DARTS ramps it linearly from 0 to 0.2, ``docs/method/goldnas.md`` §6).
    """

    def __init__(self, genotype: Genotype, C: int = 36, num_classes: int = 10, auxiliary: bool = True,
                 drop_path_prob: float = 0.0, style: str = "darts", stem_multiplier: int = 3) -> None:
        super().__init__()
        if not isinstance(genotype, Genotype):
            raise ValueError(f"genotype must be a Genotype, got {type(genotype).__name__}")
        check_int("C", C, 2)
        if C % 2:
            raise ValueError(f"C must be even (FactorizedReduce splits channels in halves), got {C}")
        check_int("num_classes", num_classes)
        check_int("stem_multiplier", stem_multiplier)
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.genotype = genotype
        self.drop_path_prob = drop_path_prob
        self.aux_cell = 2 * genotype.layers // 3
        C_stem = stem_multiplier * C
        self.stem = make_stem(C_stem)
        C_pp, C_p, C_cur = C_stem, C_stem, C
        reduction_prev = False
        self.cells = nn.ModuleList()
        C_aux = 0
        for i, triples in enumerate(genotype.cells):
            reduction = i in genotype.reductions
            if reduction:
                C_cur *= 2
            cell = RetrainCell(triples, C_pp, C_p, C_cur, reduction, reduction_prev, style)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_cur
            if i == self.aux_cell:
                C_aux = C_p
        self.auxiliary_head = AuxiliaryHead(C_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"drop_path_prob must be a float in [0, 1), got {value!r}")
        self._drop_path_prob = float(value)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.dim() != 4 or x.shape[1] != self.stem[0].in_channels:
            raise ValueError(f"GoldNasNetwork: expected input (N, {self.stem[0].in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self._drop_path_prob)
            if i == self.aux_cell and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), aux


def _as_genotype(genotype: Genotype | dict[str, Any] | str | os.PathLike[str]) -> Genotype:
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, dict):
        return Genotype.from_json(genotype)
    if isinstance(genotype, os.PathLike) or (isinstance(genotype, str) and not genotype.lstrip().startswith("{")):
        return Genotype.load(genotype)
    if isinstance(genotype, str):
        return Genotype.from_json(genotype)
    raise ValueError(f"genotype must be a Genotype, its JSON dict/text or a JSON file path, "
                     f"got {type(genotype).__name__}")


def build_network(genotype: Genotype | dict[str, Any] | str | os.PathLike[str], C: int = 36, num_classes: int = 10,
                  auxiliary: bool = True, drop_path_prob: float = 0.0, style: str = "darts") -> GoldNasNetwork:
    """The re-training network of ``genotype`` (a :class:`Genotype`, its JSON dict or text, or a file path).

    Args:
        C: initial channels (36 for CIFAR-10).
        auxiliary: auxiliary head after cell ``2L // 3`` (weight 0.4 in the protocol).
        drop_path_prob: initial drop-path probability; update ``net.drop_path_prob`` per epoch.
        style: ``'darts'`` (default) or ``'goldnas-code'`` (see :data:`STYLES`).
    """
    return GoldNasNetwork(_as_genotype(genotype), C=C, num_classes=num_classes, auxiliary=auxiliary,
                          drop_path_prob=drop_path_prob, style=style)


class Cost(NamedTuple):
    """Millions of parameters (auxiliary head excluded) and of multiply-accumulates per image."""

    params_m: float
    flops_m: float


def network_cost(genotype: Genotype | dict[str, Any] | str | os.PathLike[str], C: int = 36, num_classes: int = 10,
                 input_size: int = 32, style: str = "darts") -> Cost:
    """Parameters and FLOPs of ``build_network(genotype, C, num_classes)`` at ``input_size`` (exact counts).

    Params follow DARTS (``count_parameters_in_MB``: the auxiliary head is left out); FLOPs are conv and
    linear multiply-accumulates of one image (:func:`~goldnas_fast.nn.flops.count_macs`, biases not counted).
    """
    check_int("input_size", input_size, 4)
    if input_size % 4:
        raise ValueError(f"input_size must be a multiple of 4 (two stride-2 reductions), got {input_size}")
    net = build_network(genotype, C=C, num_classes=num_classes, auxiliary=False, style=style).eval()
    params = sum(p.numel() for p in net.parameters())
    macs = count_macs(net, torch.zeros(1, 3, input_size, input_size), bias=False)
    return Cost(params * 1e-6, macs * 1e-6)
