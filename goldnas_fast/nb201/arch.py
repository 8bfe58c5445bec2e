"""NAS-Bench-201 cell encoding: op names, edge order, arch strings, indices and isomorphism keys.

A cell is a DAG on 4 nodes; node ``t`` is the sum over ``s < t`` of ``op_{s->t}(node_s)``, node 3 is
the output. Its 6 edges, in the order used everywhere in this package (arch strings, the rows of an
architecture-parameter matrix, base-5 codes), are ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``
(``docs/method/nasbench201.md`` §1.1, §1.3). The arch string is::

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|

The official index of a cell (``docs/method/nasbench201.md`` §1.7): with op ids ``none=0 ... avg_pool_3x3=4``,
the base-5 code of a cell is ``sum_e id(op_e) * 5**(5 - e)`` (edge ``1<-0`` most significant), and
``index_to_arch(i)`` is the cell whose code is ``perm[i]``, where ``perm`` is
``list(range(15625))`` shuffled by CPython's ``random.seed(88); random.shuffle(...)``.
"""
from __future__ import annotations

import hashlib
import operator
import random
from collections.abc import Iterator, Sequence
from typing import Union

__all__ = [
    "OPS", "EDGES", "NUM_EDGES", "NUM_OPS", "NUM_ARCHS", "ArchLike",
    "parse_arch", "format_arch", "to_ops", "ops_to_code", "code_to_ops",
    "arch_to_index", "index_to_arch", "index_codes", "check_index", "unique_str", "all_archs", "iter_archs",
]

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The 5 candidate ops; position = official op id (``api_201.str2matrix``)."""

EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""The 6 edges as ``(target, source)`` pairs, in arch-string / ``edge2index`` order."""

NUM_EDGES = len(EDGES)
NUM_OPS = len(OPS)
NUM_ARCHS = NUM_OPS ** NUM_EDGES  # 15,625

ArchLike = Union[str, int, Sequence[str]]
"""An architecture: an arch string, an official index, or a sequence of 6 op names in edge order."""

_OP_ID = {name: i for i, name in enumerate(OPS)}
_SEED = 88
_PERM0 = 13931  # docs/method/nasbench201.md §1.7: perm[0] for seed 88
# sha256 of the permutation as little-endian uint16; its arch strings were checked against the
# `arch_str` column of the official NAS-Bench-201 table (all 15,625 rows, see tests).
_PERM_SHA256 = "1d3bb98de011b645ca1cf0585b09293d60b9456cac5d10e6ca296bbb3c55513e"

_perm: list[int] | None = None
_inv: list[int] | None = None
_all: tuple[str, ...] | None = None


def _permutation() -> tuple[list[int], list[int]]:
    """``(perm, inverse)``: index -> base-5 code and code -> index, computed once."""
    global _perm, _inv
    if _perm is None or _inv is None:
        perm = list(range(NUM_ARCHS))
        random.Random(_SEED).shuffle(perm)
        digest = hashlib.sha256(b"".join(c.to_bytes(2, "little") for c in perm)).hexdigest()
        if perm[0] != _PERM0 or digest != _PERM_SHA256:
            # random.shuffle's algorithm is an implementation detail of CPython; never guess an index.
            raise RuntimeError(
                "NAS-Bench-201 index permutation mismatch: random.Random(88).shuffle did not reproduce "
                f"the official order (perm[0]={perm[0]}, expected {_PERM0}); this Python's `random` "
                "differs from CPython's")
        inv = [0] * NUM_ARCHS
        for i, code in enumerate(perm):
            inv[code] = i
        _perm, _inv = perm, inv
    return _perm, _inv


def _check_op(name: object, where: str) -> str:
    if not isinstance(name, str) or name not in _OP_ID:
        raise ValueError(f"unknown op {name!r} on {where}; expected one of {list(OPS)}")
    return name


def parse_arch(s: str) -> tuple[str, ...]:
    """Parses an arch string into its 6 op names in edge order ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``.

    Strict: the string must be exactly ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (no spaces, ``none``
    edges spelled out, sources in increasing order). Raises ValueError naming what is wrong.
    """
    if not isinstance(s, str):
        raise ValueError(f"arch must be a str like '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|', got {type(s).__name__}")
    nodes = s.split("+")
    if len(nodes) != 3:
        raise ValueError(f"arch string {s!r} has {len(nodes)} '+'-separated nodes, expected 3 (nodes 1, 2, 3)")
    ops: list[str] = []
    for t, node in enumerate(nodes, start=1):
        parts = node.split("|")
        if len(parts) < 3 or parts[0] != "" or parts[-1] != "":
            raise ValueError(f"node {t} of arch string {s!r} is {node!r}; expected the form '|op~0|...|'")
        entries = parts[1:-1]
        if len(entries) != t:
            raise ValueError(f"node {t} of arch string {s!r} has {len(entries)} input edges, expected {t} "
                             f"(one from each of nodes 0..{t - 1})")
        for s_expected, entry in enumerate(entries):
            op, sep, src = entry.partition("~")
            if not sep:
                raise ValueError(f"edge {entry!r} of node {t} in arch string {s!r} lacks '~<source>'")
            if src != str(s_expected):
                raise ValueError(f"edge {entry!r} of node {t} in arch string {s!r} has source {src!r}, "
                                 f"expected {s_expected} (node {t} lists sources 0..{t - 1} in increasing order)")
            ops.append(_check_op(op, f"edge {t}<-{s_expected} of arch string {s!r}"))
    return tuple(ops)


def format_arch(ops: Sequence[str]) -> str:
    """The arch string of 6 op names given in edge order (inverse of :func:`parse_arch`)."""
    ops = _check_ops(ops)
    return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)


def _check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    if isinstance(ops, str) or not isinstance(ops, Sequence):
        raise ValueError(f"ops must be a sequence of {NUM_EDGES} op names, got {type(ops).__name__}")
    if len(ops) != NUM_EDGES:
        raise ValueError(f"ops must have {NUM_EDGES} op names (one per edge), got {len(ops)}")
    return tuple(_check_op(op, f"edge {t}<-{s}") for op, (t, s) in zip(ops, EDGES))


def check_index(index: object) -> int:
    """Returns ``index`` as an int after checking it is an integer in ``[0, 15625)``."""
    if isinstance(index, bool):
        raise ValueError(f"arch index must be an int in [0, {NUM_ARCHS}), got bool {index!r}")
    try:
        i = operator.index(index)  # int and numpy integers; not floats or strings
    except TypeError:
        raise ValueError(f"arch index must be an int in [0, {NUM_ARCHS}), got {type(index).__name__} "
                         f"{index!r}") from None
    if not 0 <= i < NUM_ARCHS:
        raise ValueError(f"arch index {i} out of range; expected 0 <= index < {NUM_ARCHS}")
    return i


def to_ops(arch: ArchLike) -> tuple[str, ...]:
    """The 6 op names (edge order) of an arch string, an official index, or a sequence of op names."""
    if isinstance(arch, str):
        return parse_arch(arch)
    if isinstance(arch, Sequence):
        return _check_ops(arch)
    return code_to_ops(_permutation()[0][check_index(arch)])


def ops_to_code(ops: Sequence[str]) -> int:
    """Base-5 code ``sum_e id(op_e) * 5**(5-e)`` of 6 op names (the pre-shuffle ``gen_all`` order)."""
    code = 0
    for op in _check_ops(ops):
        code = code * NUM_OPS + _OP_ID[op]
    return code


def code_to_ops(code: int) -> tuple[str, ...]:
    """Inverse of :func:`ops_to_code`."""
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < NUM_ARCHS:
        raise ValueError(f"code must be an int in [0, {NUM_ARCHS}), got {code!r}")
    return tuple(OPS[(code // NUM_OPS ** (NUM_EDGES - 1 - e)) % NUM_OPS] for e in range(NUM_EDGES))


def arch_to_index(arch: ArchLike) -> int:
    """Official NB201 / NATS-tss index of an architecture (a string or op names; an int is checked)."""
    if not isinstance(arch, (str, Sequence)):
        return check_index(arch)
    return _permutation()[1][ops_to_code(to_ops(arch))]


def index_to_arch(index: int) -> str:
    """Official arch string of index ``index`` (0 <= index < 15625)."""
    return format_arch(to_ops(check_index(index)))


def unique_str(arch: ArchLike) -> str:
    """Isomorphism key: NATS-Bench ``get_unique_str`` = ``Structure.to_unique_str(consider_zero=True)``.

    Node 0 is ``"0"``; each later node is the ``+``-join of the sorted terms of its incoming edges,
    where an edge gives ``"#"`` if its op is ``none`` or its source is ``"#"``, the source's key
    itself for ``skip_connect``, and ``"(<source>)@<op>"`` otherwise. The key is node 3's.
    As in the official code, ``"#"`` terms are kept (one per zero input), so e.g. a cell whose
    output is ``conv3(x) + 0 + 0`` and one with ``conv3(x) + 0 + 0 + 0`` get different keys; this
    is the definition behind the table's 6,466 classes.
    """
    ops = to_ops(arch)
    nodes = ["0"]
    for t in range(1, 4):
        terms = []
        for (target, src), op in zip(EDGES, ops):
            if target != t:
                continue
            if op == "none" or nodes[src] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[src])
            else:
                terms.append(f"({nodes[src]})@{op}")
        nodes.append("+".join(sorted(terms)))
    return nodes[3]


def index_codes() -> tuple[int, ...]:
    """Base-5 code (:func:`ops_to_code`) of every index: the seed-88 permutation itself."""
    return tuple(_permutation()[0])


def all_archs() -> tuple[str, ...]:
    """All 15,625 arch strings; position = official index (the official ``meta_archs`` list)."""
    global _all
    if _all is None:
        perm = _permutation()[0]
        _all = tuple("|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*code_to_ops(c)) for c in perm)
    return _all


def iter_archs() -> Iterator[tuple[int, str]]:
    """``(index, arch_string)`` for every architecture, in index order."""
    return enumerate(all_archs())
