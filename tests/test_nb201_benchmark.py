"""The embedded NAS-Bench-201 table against the shared CSV, the documented facts, and the query API."""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from goldnas_fast.errors import UserError
from goldnas_fast.nb201 import cli
from goldnas_fast.nb201.arch import index_to_arch, parse_arch, unique_str
from goldnas_fast.nb201.benchmark import DEFAULT_PATH, METRICS, Benchmark

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201"


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    return Benchmark()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    path = DATA / "nb201_accuracies.csv"
    if not path.is_file():
        pytest.skip(f"shared NAS-Bench-201 table not found at {path}")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_embedded_table_equals_csv(bench: Benchmark, rows: list[dict[str, str]]) -> None:
    assert len(bench) == len(rows) == 15625
    numeric = [c for c in rows[0] if c not in ("index", "arch_str", "unique_str")]
    for name in numeric:
        col = bench.column(name)
        text = [r[name] for r in rows]
        expected = np.array([float(t) if t else np.nan for t in text])
        np.testing.assert_array_equal(col, expected, err_msg=name)  # exact, NaN == NaN
        assert all(("" if math.isnan(v) else f"{v:.6f}") == t for v, t in zip(col.tolist(), text)), name
    for i in (0, 1, 296, 6111, 15624):
        entry = bench.query(i)
        assert entry["arch"] == rows[i]["arch_str"] and entry["unique_str"] == rows[i]["unique_str"]


def test_params_columns(bench: Benchmark) -> None:
    path = DATA / "params_mismatch.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open(path, newline="") as f:
        mismatch = {int(r["index"]): r for r in csv.DictReader(f)}
    counted, table = bench.column("params_m"), bench.column("params_m_table")
    differs = set(np.flatnonzero(np.abs(counted - table) > 1e-6).tolist())
    assert differs == set(mismatch)
    for i, r in mismatch.items():
        assert counted[i] == pytest.approx(float(r["params_m_c10_counted"]), abs=1e-9)
    e = bench.query(296)
    assert e["params_m"] == pytest.approx(0.129306, abs=1e-9)
    assert e["params_m_table"] == e["params_m_c10"] == pytest.approx(0.119973, abs=1e-9)
    assert bench.get(11, "flops_m") == pytest.approx(113.95137, abs=1e-9)
    assert bench.column("flops_m")[284] == pytest.approx(11.71521, abs=1e-9)


def test_documented_facts(bench: Benchmark) -> None:
    near = lambda x: pytest.approx(x, abs=5e-5)  # noqa: E731  (docs quote 4 decimals)
    # arch 0 (data README check 2)
    assert bench.get(0, "cifar10-test-200") == near(85.8633)
    assert bench.get(0, "cifar100-test-200") == near(52.9133)
    assert bench.get(0, "imagenet16-test-200") == near(26.6333)
    assert bench.get(0, "cifar10-valid-200") == near(81.9827)
    # DARTS collapse: all-skip arch 1835
    skip = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    assert bench.index(skip) == 1835
    assert bench.get(skip, "cifar10-valid-200") == near(39.7693)
    assert bench.get(skip, "cifar10-test-200") == near(54.2967)
    assert bench.get(skip, "cifar100-test-200") == near(15.6067)
    assert bench.get(skip, "imagenet16-test-200") == near(16.3222)
    # per-column maxima ("optimal" row); ties go to the lowest index
    best, value = bench.best("cifar10-test-200")
    assert best == 6111 and value == near(94.3733)
    assert bench.get(13714, "cifar10-test-200") == value
    assert bench.get(13714, "cifar10-valid-200") == near(91.496)
    assert bench.best("cifar10-valid-200") == (6111, near(91.6067))
    assert bench.best("cifar100-test-200") == (9930, near(73.5133))
    assert bench.best("imagenet16-test-200") == (857, near(47.3111))
    assert bench.best("cifar10-test-12")[1] == near(89.16)
    assert bench.get(9930, "cifar10-test-200") == near(94.3633)
    assert bench.get(9930, "cifar10-valid-200") == near(91.5533)
    assert bench.get(9930, "imagenet16-test-200") == near(46.3444)
    # NATS-Bench GDAS archs (§3.3: 93.61, 93.67, 92.41, mean 93.23; 6168 holds 92.415 exactly)
    gdas = [bench.get(i, "cifar10-test-200") for i in (3928, 138, 6168)]
    assert gdas == [pytest.approx(v, abs=0.0051) for v in (93.61, 93.67, 92.41)]
    assert sum(gdas) / 3 == pytest.approx(93.23, abs=0.005)
    assert int(np.isnan(bench.column("naswot")).sum()) == 341
    assert bench.best("params_m", mode="min")[1] == pytest.approx(0.073306, abs=1e-9)


def test_metric_mapping(bench: Benchmark) -> None:
    assert METRICS["cifar10-test-200"] == "c10_test_acc_200"
    assert METRICS["cifar10-valid-200"] == "c10_valid_acc_200"
    assert METRICS["cifar10-valid-test-200"] == "c10_trainsplit_test_acc_200"
    assert METRICS["cifar10-valid-12"] == "c10_valid_acc_12"
    assert METRICS["cifar100-test-200"] == "c100_test_acc_200_nats"
    assert METRICS["imagenet16-test-200"] == "in16_test_acc_200_nats"
    entry = bench.query(1234)
    for metric, column in METRICS.items():
        col = bench.column(metric)
        assert col.shape == (15625,) and col.dtype == np.float64 and not col.flags.writeable
        assert bench.get(1234, metric) == entry[column] == col[1234] or math.isnan(col[1234])
        np.testing.assert_array_equal(col, bench.column(column))
    with pytest.raises(ValueError, match="unknown metric 'cifar10'.*cifar10-test-200.*cifar10-valid-12"):
        bench.get(0, "cifar10")
    with pytest.raises(ValueError, match="unknown metric"):
        bench.column("test-accuracy")
    with pytest.raises(ValueError, match="mode must be"):
        bench.best("cifar10-test-200", mode="top")


def test_query_keys_and_isomorphism(bench: Benchmark) -> None:
    entry = bench.query(index_to_arch(0))
    assert entry["index"] == 0
    assert {"index", "arch", "unique_str", "params_m", "params_m_table", "flops_m", "c10_test_acc_200",
            "c10_valid_acc_12", "naswot_v1_score"} <= entry.keys()
    assert bench.query(0) == bench.query(parse_arch(entry["arch"])) == bench.query(np.int64(0))
    iso = bench.isomorphic(0)
    assert 0 in iso and iso == sorted(iso)
    assert all(unique_str(i) == unique_str(0) for i in iso)
    assert bench.isomorphic(iso[-1]) == iso
    assert bench.isomorphic(1835) == [1835]
    assert len({k for k in bench.unique_strs()}) == 6466
    assert bench.arch(6111) == index_to_arch(6111)


@pytest.mark.parametrize("bad, message", [
    (15625, "out of range"), (-1, "out of range"), (2.0, "got float"),
    ("|none~0|", "expected 3"), ("|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op"),
])
def test_unknown_architectures(bench: Benchmark, bad: object, message: str) -> None:
    for call in (bench.query, bench.isomorphic, lambda a: bench.get(a, "cifar10-test-200")):
        with pytest.raises(ValueError, match=message):
            call(bad)


def test_loading(tmp_path: Path) -> None:
    assert DEFAULT_PATH.stat().st_size < 1_500_000
    assert Benchmark().load_seconds >= 0  # measured in the report; no timing assertion
    corrupt = tmp_path / "t.npz"
    with np.load(DEFAULT_PATH) as z:
        parts = dict(z)
    parts["narrow"] = parts["narrow"].copy()
    parts["narrow"][2, 6111] += 1
    np.savez_compressed(corrupt, **parts)
    with pytest.raises(RuntimeError, match="checksum"):
        Benchmark(corrupt)
    with pytest.raises(FileNotFoundError, match="_make_table"):
        Benchmark(tmp_path / "missing.npz")


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["--best", "cifar10-test-200", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 6111
    nan_index = int(np.flatnonzero(np.isnan(Benchmark().column("naswot")))[0])
    assert _cli([str(nan_index), "--json", "--isomorphic"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["naswot_v1_score"] is None and nan_index in out["isomorphic"]
    assert _cli([index_to_arch(1835)]) == 0
    assert "54.296667" in capsys.readouterr().out
    for argv in ([], ["1", "--best", "naswot"], ["15625"], ["--best", "nope"]):
        with pytest.raises(UserError):
            _cli(argv)
