"""``Genotype``: a discrete GOLD-NAS architecture, one list of (op, source, target) triples per cell.

Cells are independent (``docs/method/goldnas.md`` §1.3): every cell has its own triples, a node may have any number
of inputs and an edge any number of operators. Nodes 0 and 1 are the cell inputs (outputs of cells
k-2 and k-1), nodes 2..5 the intermediate nodes; a cell's output concatenates its distinct targets.
The format matches the ``gene`` lists of the unofficial code (``sunsmarterjie/GOLD_NAS``).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from goldnas_fast.spaces.goldnas.ops import OPS

__all__ = ["Genotype", "Triple", "NUM_INPUTS", "NUM_NODES", "reduction_cells", "FORMAT"]

NUM_INPUTS = 2
NUM_NODES = 4  # intermediate nodes per cell
FORMAT = "goldnas_fast.genotype/1"

Triple = tuple[str, int, int]


def reduction_cells(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells of an ``layers``-cell network: ``(L // 3, 2L // 3)``."""
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 3:
        raise ValueError(f"layers must be an int >= 3 (reductions at L//3 and 2L//3), got {layers!r}")
    return (layers // 3, 2 * layers // 3)


def _parse_triple(c: int, t: int, triple: object) -> Triple:
    where = f"cell {c}, triple {t} ({triple!r})"
    if isinstance(triple, (str, bytes)) or not isinstance(triple, Sequence) or len(triple) != 3:
        raise ValueError(f"Genotype: {where} must be an (op, source, target) triple")
    op, source, target = triple
    if op == "none":
        raise ValueError(f"Genotype: {where}: 'none' is not an operation of a discrete cell; drop the triple")
    if op not in OPS:
        raise ValueError(f"Genotype: {where}: unknown operator {op!r}; expected one of "
                         f"{[o for o in OPS if o != 'none']}")
    for name, value in (("source", source), ("target", target)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"Genotype: {where}: {name} must be an int, got {value!r}")
    if not NUM_INPUTS <= target < NUM_INPUTS + NUM_NODES:
        raise ValueError(f"Genotype: {where}: target node must be in {NUM_INPUTS}..{NUM_INPUTS + NUM_NODES - 1}, "
                         f"got {target}")
    if not 0 <= source < target:
        raise ValueError(f"Genotype: {where}: source node must be in 0..{target - 1} (an earlier node than the "
                         f"target {target}), got {source}")
    return (str(op), int(source), int(target))


@dataclass(frozen=True)
class Genotype:
    """A discrete architecture of the GOLD-NAS space.

    Args:
        cells: per cell, the (op, source, target) triples of its surviving operators.
        reductions: indices of the reduction cells; defaults to ``(L // 3, 2L // 3)`` and must equal it
            (the macro skeleton fixes them).

    Raises:
        ValueError: naming the cell, triple or node that is wrong: unknown or ``none`` operator, a
            target outside 2..5, a source not earlier than its target, a duplicate triple, a cell without
            operators, a node used as a source but without inputs, or wrong reduction indices.
    """

    cells: tuple[tuple[Triple, ...], ...]
    reductions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        cells = self.cells
        if isinstance(cells, (str, bytes)) or not isinstance(cells, Sequence):
            raise ValueError("Genotype: cells must be a sequence of cells (lists of triples), "
                             f"got {type(cells).__name__}")
        parsed: list[tuple[Triple, ...]] = []
        for c, cell in enumerate(cells):
            if isinstance(cell, (str, bytes)) or not isinstance(cell, Sequence):
                raise ValueError(f"Genotype: cell {c} must be a sequence of (op, source, target) triples")
            triples = tuple(_parse_triple(c, t, tr) for t, tr in enumerate(cell))
            if not triples:
                raise ValueError(f"Genotype: cell {c} has no operations (every cell needs at least one)")
            dup = [tr for tr, n in Counter(triples).items() if n > 1]
            if dup:
                raise ValueError(f"Genotype: cell {c}: triple {dup[0]} appears more than once")
            targets = {tr[2] for tr in triples}
            for op, source, target in triples:
                if source >= NUM_INPUTS and source not in targets:
                    raise ValueError(f"Genotype: cell {c}: node {source} is the source of ({op!r}, {source}, "
                                     f"{target}) but has no inputs itself")
            parsed.append(tuple(sorted(triples, key=lambda tr: (tr[2], tr[1], OPS.index(tr[0])))))
        if len(parsed) < 3:
            raise ValueError(f"Genotype: needs at least 3 cells (reductions at L//3 and 2L//3), got {len(parsed)}")
        expected = reduction_cells(len(parsed))
        reductions = self.reductions
        if reductions is None:
            reductions = expected
        elif isinstance(reductions, (str, bytes)) or not isinstance(reductions, Sequence):
            raise ValueError(f"Genotype: reductions must be a sequence of cell indices, got {reductions!r}")
        reductions = tuple(reductions)
        if reductions != expected:
            raise ValueError(f"Genotype: reductions {list(reductions)} do not match the skeleton of {len(parsed)} "
                             f"cells, which reduces at cells {list(expected)}")
        object.__setattr__(self, "cells", tuple(parsed))
        object.__setattr__(self, "reductions", reductions)

    @property
    def layers(self) -> int:
        """Number of cells."""
        return len(self.cells)

    def concat(self, cell: int) -> tuple[int, ...]:
        """The nodes whose concatenation is the output of ``cell`` (its distinct targets, ascending)."""
        return tuple(sorted({t for _, _, t in self.cells[cell]}))

    def num_ops(self) -> int:
        """Total number of operations over all cells."""
        return sum(len(c) for c in self.cells)

    def op_counts(self) -> dict[str, int]:
        """Number of operations per operator name."""
        return dict(Counter(op for cell in self.cells for op, _, _ in cell))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: ``{"format", "layers", "reductions", "cells": [[[op, source, target], ...], ...]}``."""
        return {"format": FORMAT, "layers": self.layers, "reductions": list(self.reductions or ()),
                "cells": [[list(tr) for tr in cell] for cell in self.cells]}

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> Genotype:
        """Inverse of :meth:`to_json`; also accepts the JSON text. ``layers`` (if given) must match."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise ValueError(f"Genotype.from_json: not valid JSON: {exc}") from None
        if not isinstance(data, dict) or "cells" not in data:
            raise ValueError("Genotype.from_json: expected an object with a 'cells' list")
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise ValueError(f"Genotype.from_json: unknown format {fmt!r}; expected {FORMAT!r}")
        cells = data["cells"]
        if not isinstance(cells, list):
            raise ValueError("Genotype.from_json: 'cells' must be a list")
        if "layers" in data and data["layers"] != len(cells):
            raise ValueError(f"Genotype.from_json: 'layers' is {data['layers']} but 'cells' holds {len(cells)} cells")
        reductions = data.get("reductions")
        return cls(cells=cells, reductions=None if reductions is None else tuple(reductions))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes :meth:`to_json` as indented JSON to ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Genotype:
        """Reads a genotype written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_json(json.load(f))

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {op}" for op, n in sorted(self.op_counts().items()))
        return f"Genotype({self.layers} cells, {self.num_ops()} ops: {counts})"
