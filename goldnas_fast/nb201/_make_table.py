"""Builds ``goldnas_fast/resources/nb201_table.npz`` from the shared NAS-Bench-201 CSV (not run at import).

Usage, from the repository root::

    python -m goldnas_fast.nb201._make_table [path/to/nb201_accuracies.csv]

(default: ``../shared/data/nb201/nb201_accuracies.csv``). The CSV (README next to it) has 6-decimal
values; each numeric column is stored exactly as ``round(value * 1e6)`` in ``int32`` (``int64`` for
``naswot_v1_score``, whose magnitude reaches 2.5e6), missing values as ``MISSING``, one row per column,
in ``np.savez_compressed`` (format: ``_table_format.py``). ``arch_str`` and ``unique_str`` are not
stored: ``index_to_arch`` and ``unique_str`` reproduce them, which this script checks for every row. It also checks that decoding
the file gives back the CSV text of every cell, and stores a sha256 of the payload that
:class:`~goldnas_fast.nb201.benchmark.Benchmark` verifies on load.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from goldnas_fast.nb201._table_format import FORMAT_VERSION, MISSING, decode, payload_sha256
from goldnas_fast.nb201.arch import NUM_ARCHS, index_to_arch, unique_str

__all__ = ["DEFAULT_CSV", "OUTPUT", "make_table"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "nb201" / "nb201_accuracies.csv"
OUTPUT = REPO / "goldnas_fast" / "resources" / "nb201_table.npz"
_TEXT_COLUMNS = ("index", "arch_str", "unique_str")
_WIDE = ("naswot_v1_score",)  # does not fit int32 after scaling by 1e6


def _to_micro(text: str) -> int:
    if text == "":
        return int(MISSING)
    whole, _, frac = text.lstrip("-").partition(".")
    if len(frac) != 6:
        raise ValueError(f"expected 6 decimals, got {text!r}")
    value = int(whole) * 1_000_000 + int(frac)
    return -value if text.startswith("-") else value


def _to_text(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.6f}"


def make_table(csv_path: Path = DEFAULT_CSV, output: Path = OUTPUT) -> Path:
    """Converts the CSV to ``output`` and checks the round trip; returns ``output``."""
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    if len(rows) != NUM_ARCHS:
        raise ValueError(f"{csv_path}: {len(rows)} rows, expected {NUM_ARCHS}")
    col = {name: i for i, name in enumerate(header)}
    for i, row in enumerate(rows):
        if int(row[col["index"]]) != i:
            raise ValueError(f"{csv_path}: row {i} has index {row[col['index']]}")
        if row[col["arch_str"]] != index_to_arch(i) or row[col["unique_str"]] != unique_str(i):
            raise ValueError(f"{csv_path}: row {i}: arch_str/unique_str not reproduced by goldnas_fast.nb201.arch")
    numeric = [name for name in header if name not in _TEXT_COLUMNS]
    narrow_names = [n for n in numeric if n not in _WIDE]
    wide_names = [n for n in numeric if n in _WIDE]
    ints = {n: np.array([_to_micro(r[col[n]]) for r in rows], dtype=np.int64) for n in numeric}
    for n in narrow_names:
        if (ints[n] == MISSING).any() or np.abs(ints[n]).max() >= 2**31:
            raise ValueError(f"column {n} does not fit int32 (or has missing values)")
    columns = np.array(narrow_names + wide_names)
    narrow = np.stack([ints[n] for n in narrow_names]).astype("<i4")
    wide = np.stack([ints[n] for n in wide_names]).astype("<i8")
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, format_version=np.array(FORMAT_VERSION), columns=columns, narrow=narrow,
                        wide=wide, sha256=np.array(payload_sha256(columns, narrow, wide)))
    # Round trip: every decoded cell prints as the CSV's text.
    with np.load(output, allow_pickle=False) as z:
        values = np.concatenate([decode(z["narrow"]), decode(z["wide"])])
        names = z["columns"].tolist()
    for k, n in enumerate(names):
        for i, row in enumerate(rows):
            if _to_text(values[k, i]) != row[col[n]]:
                raise AssertionError(f"round trip failed: column {n}, row {i}: {values[k, i]!r} vs {row[col[n]]!r}")
    return output


if __name__ == "__main__":
    out = make_table(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CSV)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
