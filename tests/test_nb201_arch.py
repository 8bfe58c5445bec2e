"""NAS-Bench-201 cell encoding against the official order and the shared table (all 15,625 rows)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from goldnas_fast.nb201 import arch as A

CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201" / "nb201_accuracies.csv"

# Strings quoted in docs/method/nasbench201.md / the data README.
KNOWN = {
    0: "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    1835: "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    6111: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    9930: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    11472: "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    if not CSV.is_file():
        pytest.skip(f"shared NAS-Bench-201 table not found at {CSV}")
    with open(CSV, newline="") as f:
        return list(csv.DictReader(f))


def test_constants() -> None:
    assert A.OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert A.EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert A.NUM_ARCHS == 15625
    assert A.index_codes()[0] == 13931
    assert sorted(A.index_codes()) == list(range(15625))


@pytest.mark.parametrize("index", sorted(KNOWN))
def test_known_strings(index: int) -> None:
    assert A.index_to_arch(index) == KNOWN[index]
    assert A.arch_to_index(KNOWN[index]) == index


def test_all_indices_match_table(rows: list[dict[str, str]]) -> None:
    assert len(rows) == A.NUM_ARCHS
    archs = A.all_archs()
    for i, row in enumerate(rows):
        assert int(row["index"]) == i
        assert archs[i] == row["arch_str"] == A.index_to_arch(i)
        assert A.arch_to_index(row["arch_str"]) == i
        assert A.format_arch(A.parse_arch(row["arch_str"])) == row["arch_str"]


def test_unique_str_matches_table(rows: list[dict[str, str]]) -> None:
    keys = [A.unique_str(i) for i in range(A.NUM_ARCHS)]
    mismatches = [i for i, row in enumerate(rows) if keys[i] != row["unique_str"]]
    assert mismatches == []
    assert len(set(keys)) == 6466


def test_unique_str_semantics() -> None:
    assert A.unique_str(0) == "(0)@avg_pool_3x3+(0)@avg_pool_3x3+(0)@nor_conv_1x1+(0)@nor_conv_1x1"
    # skip_connect is the identity: conv3(0) reached directly or through a skip node.
    a = ("skip_connect", "none", "none", "none", "nor_conv_3x3", "none")
    b = ("none", "none", "none", "nor_conv_3x3", "none", "none")
    assert A.unique_str(a) == A.unique_str(b) == "#+#+(0)@nor_conv_3x3"
    # ops on edges leaving a dead (all-none) node do not matter
    c = ("none", "nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3", "none")
    d = ("none", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "none")
    assert A.unique_str(c) == A.unique_str(d) != A.unique_str(("none", *c[1:4], "avg_pool_3x3", "skip_connect"))
    # the official key keeps one '#' per zero input, so it is not a full functional canonical form
    e = ("none", "none", "none", "nor_conv_3x3", "none", "skip_connect")
    assert A.unique_str(e) == "#+#+#+(0)@nor_conv_3x3" != A.unique_str(b)


def test_parse_format_and_codes() -> None:
    ops = A.parse_arch(KNOWN[11472])
    assert ops == ("nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "skip_connect")
    assert A.format_arch(list(ops)) == KNOWN[11472]
    assert A.code_to_ops(A.ops_to_code(ops)) == ops
    assert A.ops_to_code(("none",) * 6) == 0 and A.ops_to_code(("avg_pool_3x3",) * 6) == 15624
    # index, string, op sequence and numpy ints all denote the same arch
    assert A.to_ops(11472) == A.to_ops(np.int64(11472)) == A.to_ops(KNOWN[11472]) == A.to_ops(list(ops))
    assert A.arch_to_index(ops) == A.arch_to_index(np.int32(11472)) == 11472
    assert list(A.iter_archs())[6111] == (6111, KNOWN[6111])


GOOD = KNOWN[11472]


@pytest.mark.parametrize("bad, message", [
    ("|none~0|+|none~0|none~1|", "2 '+'-separated nodes, expected 3"),
    (GOOD + "+|none~0|", "4 '+'-separated nodes"),
    (GOOD.replace("nor_conv_3x3~1", "conv_3x3~1"), "unknown op 'conv_3x3' on edge 2<-1"),
    (GOOD.replace("none~1", "none~2"), "has source '2', expected 1"),
    (GOOD.replace("|none~0|nor_conv", "|nor_conv"), "node 2 of arch string"),
    (GOOD.replace("|skip_connect~2|", "|"), "node 3 of arch string"),
    (GOOD.replace("|skip_connect~2|", "|skip_connect~2|none~3|"), "4 input edges, expected 3"),
    (GOOD.rstrip("|"), "expected the form"),
    (" " + GOOD, "expected the form"),
    (GOOD.replace("none~0", "none0"), "lacks '~<source>'"),
    (GOOD.replace("~1|+", "~1||+"), "3 input edges, expected 2"),
    ("", "1 '+'-separated nodes"),
])
def test_bad_strings(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("|", r"\|").replace("+", r"\+")):
        A.parse_arch(bad)
    with pytest.raises(ValueError):
        A.arch_to_index(bad)


@pytest.mark.parametrize("bad, message", [
    (-1, "out of range"), (15625, "out of range"), (10**20, "out of range"),
    (3.0, "got float"), (True, "got bool"), (None, "got NoneType"), (np.float64(2), "got float64"),
])
def test_bad_indices(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        A.index_to_arch(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        A.to_ops(bad)  # type: ignore[arg-type]


def test_bad_op_sequences() -> None:
    with pytest.raises(ValueError, match="6 op names"):
        A.format_arch(["none"] * 5)
    with pytest.raises(ValueError, match="unknown op 'conv' on edge 3<-1"):
        A.format_arch(["none"] * 4 + ["conv", "none"])
    with pytest.raises(ValueError, match="code must be"):
        A.code_to_ops(15625)
