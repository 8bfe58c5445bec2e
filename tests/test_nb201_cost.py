"""Official NAS-Bench-201 params/FLOPs counting rule against the official records and the table."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from goldnas_fast.nb201.arch import EDGES, OPS, index_to_arch
from goldnas_fast.nb201.cost import (
    Cost, cost, fixed_flops_m, fixed_params_m, op_flops_m, op_params_m, stage_sizes,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201"

# docs/method/nasbench201.md §1.5: official `params` and `flop` records (10 classes, 32x32).
OFFICIAL = {0: (0.129306, 15.64737), 11: (0.802426, 113.95137), 284: (0.101306, 11.71521)}


def _read(name: str) -> list[dict[str, str]]:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared NAS-Bench-201 data not found at {path}")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("index", sorted(OFFICIAL))
def test_official_records(index: int) -> None:
    params, flops = OFFICIAL[index]
    c = cost(index)
    assert isinstance(c, Cost)
    assert c.params_m == pytest.approx(params, abs=1e-9)
    assert c.flops_m == pytest.approx(flops, abs=1e-9)
    assert cost(index_to_arch(index)) == c


def test_params_of_every_arch() -> None:
    rows = _read("nb201_accuracies.csv")
    mismatch = {int(r["index"]): r for r in _read("params_mismatch.csv")}
    assert len(mismatch) == 204
    assert not mismatch.keys() & {0, 11, 284, 1835, 6111, 9930, 13714, 857}
    bad = []
    for row in rows:
        i = int(row["index"])
        got = cost(i).params_m
        if i in mismatch:
            assert float(mismatch[i]["params_m_c10"]) == float(row["params_m_c10"])
            expected = float(mismatch[i]["params_m_c10_counted"])
            assert abs(got - float(row["params_m_c10"])) > 1e-6  # the table's value really differs
        else:
            expected = float(row["params_m_c10"])
        if abs(got - expected) > 1e-6:
            bad.append((i, got, expected))
    assert bad == []


def test_mismatch_pattern_from_docs() -> None:
    # One conv edge over the 15 cells: 28,000 params (1x1) and 243,040 params (3x3) (§1.5).
    assert 5 * sum(op_params_m("nor_conv_1x1", s) for s in range(3)) == pytest.approx(0.028, abs=1e-12)
    assert 5 * sum(op_params_m("nor_conv_3x3", s) for s in range(3)) == pytest.approx(0.24304, abs=1e-12)
    assert cost(296).params_m == pytest.approx(0.129306, abs=1e-9)


@pytest.mark.parametrize("num_classes, input_size", [(10, 32), (100, 32), (120, 16), (7, 8)])
def test_decomposition(num_classes: int, input_size: int) -> None:
    rng = random.Random(0)
    for _ in range(40):
        ops = [rng.choice(OPS) for _ in EDGES]
        c = cost(ops, num_classes, input_size)
        flops = fixed_flops_m(num_classes, input_size) + 5 * sum(
            op_flops_m(op, s, input_size) for s in range(3) for op in ops)
        params = fixed_params_m(num_classes) + 5 * sum(op_params_m(op, s) for s in range(3) for op in ops)
        assert c.flops_m == pytest.approx(flops, rel=1e-12)
        assert c.params_m == pytest.approx(params, rel=1e-12)


def test_closed_form_terms() -> None:
    assert op_flops_m("nor_conv_3x3", 0) == 9 * 16 * 16 * 32 * 32 / 1e6
    assert op_flops_m("nor_conv_1x1", 2, 16) == 64 * 64 * 4 * 4 / 1e6
    assert op_flops_m("nor_conv_1x1", 1, bias=True) == (32 * 32 + 32) * 16 * 16 / 1e6
    assert op_params_m("nor_conv_1x1", 1, affine=False, bias=True) == (32 * 32 + 32) / 1e6
    for op in ("none", "skip_connect", "avg_pool_3x3"):
        assert op_flops_m(op, 1) == op_params_m(op, 1) == 0
    # all-none cell: only the fixed part; the classifier is 64*K + K
    none = ["none"] * 6
    assert cost(none, 100).flops_m - cost(none, 10).flops_m == pytest.approx(90 * 65 / 1e6, abs=1e-12)
    assert cost(none).params_m == fixed_params_m() == 0.073306  # min of params_m_c10 in the table
    assert stage_sizes(16) == (16, 8, 4)
    assert cost(11, C=8, N=1).params_m < cost(11).params_m


@pytest.mark.parametrize("call, message", [
    (lambda: cost(0, input_size=30), "input_size must be a multiple of 4"),
    (lambda: cost(0, num_classes=0), "num_classes must be an int >= 1"),
    (lambda: cost(0, N=0), "N must be an int >= 1"),
    (lambda: cost(15625), "out of range"),
    (lambda: cost("|nor_conv_3x3~0|"), "expected 3"),
    (lambda: op_flops_m("nor_conv_3x3", 3), "stage must be 0, 1 or 2"),
    (lambda: op_flops_m("conv", 0), "unknown op 'conv'"),
    (lambda: fixed_flops_m(10, 32.0), "input_size must be an int"),
])
def test_bad_inputs(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
